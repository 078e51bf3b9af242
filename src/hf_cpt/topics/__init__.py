"""Topic classification (§3.2.1): taxonomies, LLM annotation, classifier training and corpus labeling."""

from hf_cpt.topics.annotate import annotate_topics, normalize_label, topic_probabilities
from hf_cpt.topics.classifier import (
    ClassifierReport,
    classification_metrics,
    embedded_classifier_path,
    stratified_split,
    train_topic_classifier,
)
from hf_cpt.topics.labeling import label_topics
from hf_cpt.topics.ngram_classifier import NGRAM_MODEL_NAME, NgramClassifier, NgramConfig, train_ngram_classifier
from hf_cpt.topics.probe_classifier import PROBE_MODEL_NAME, ProbeClassifier, ProbeConfig, train_probe_classifier
from hf_cpt.topics.relabel import relabel_sources
from hf_cpt.topics.taxonomy import (
    CHINESE,
    ENGLISH,
    OTHERS,
    SOURCE_TAXONOMIES,
    TAXONOMIES,
    Taxonomy,
    check_corpus_topics,
    check_topic_values,
    load_taxonomy,
)

__all__ = [
    "CHINESE",
    "ENGLISH",
    "NGRAM_MODEL_NAME",
    "OTHERS",
    "PROBE_MODEL_NAME",
    "SOURCE_TAXONOMIES",
    "TAXONOMIES",
    "ClassifierReport",
    "NgramClassifier",
    "NgramConfig",
    "ProbeClassifier",
    "ProbeConfig",
    "Taxonomy",
    "annotate_topics",
    "check_corpus_topics",
    "check_topic_values",
    "classification_metrics",
    "embedded_classifier_path",
    "label_topics",
    "load_taxonomy",
    "normalize_label",
    "relabel_sources",
    "stratified_split",
    "topic_probabilities",
    "train_ngram_classifier",
    "train_probe_classifier",
    "train_topic_classifier",
]

"""Relabel web sources with topic classifiers trained on their labelled documents (§3.2.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelerate import PartialState

from hf_cpt.data.sources import load_source
from hf_cpt.topics.classifier import train_topic_classifier
from hf_cpt.topics.labeling import label_topics

if TYPE_CHECKING:
    from hf_cpt.run_config import TopicClassifierConfig


def relabel_sources(
    settings: TopicClassifierConfig,
    dataset_path: str,
    output_dir: str | Path,
    text_column: str = "text",
    topic_column: str = "topic",
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Train a topic classifier per web source on its labelled documents and label the source with it.

    The documents of `dataset_path` carry topics, standing in for the LLM-labelled sample of the paper; each
    classifier learns them on a stratified split, and its predictions (not the given labels) become the topics
    a stage mixes. Everything lands under `output_dir/topic_labels`: `classifiers/<source>/` (a finished
    classifier is reused on a re-run), `shards/` (labelling resumes where it stopped) and `data/<source>/`, a
    corpus folder for `load_corpus(source_paths=...)`.

    Returns:
        that corpus folder, and per source its taxonomy, the classifier's held-out metrics and the agreement
        between predicted and given topics per split.
    """
    labels_dir = Path(output_dir) / "topic_labels"
    results = {}
    for source, taxonomy in settings.taxonomies.items():
        classifier_dir = labels_dir / "classifiers" / source
        documents = {
            split: load_source(dataset_path, source, split, text_column, required=required)
            for split, required in (("train", True), ("validation", False))
        }
        labelled = documents["train"]
        if settings.train_documents:
            labelled = labelled.shuffle(seed=0).select(range(min(settings.train_documents, len(labelled))))
        if not (classifier_dir / "metrics.json").is_file():  # a finished classifier is reused on a re-run
            train_topic_classifier(
                labelled, taxonomy, settings.model_for(source), classifier_dir, text_column=text_column,
                label_column=topic_column, test_size=settings.test_size, batch_size=settings.batch_size,
                max_length=settings.max_length, **settings.training_settings(source),
            )  # fmt: skip
        metrics = json.loads((classifier_dir / "metrics.json").read_text())
        agreement = {}
        for split, data in documents.items():
            if data is None:
                continue
            given = data[topic_column]
            predicted = label_topics(
                data.remove_columns(topic_column),
                str(classifier_dir),
                text_column=text_column,
                max_length=settings.max_length,
                output_dir=labels_dir / "shards" / source / split,
            ).remove_columns("topic_probs")
            if topic_column != "topic":
                predicted = predicted.rename_column("topic", topic_column)
            matches = zip(given, predicted[topic_column], strict=True)
            agreement[split] = sum(a == b for a, b in matches) / len(given)
            if PartialState().is_main_process:
                folder = labels_dir / "data" / source
                folder.mkdir(parents=True, exist_ok=True)
                predicted.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        PartialState().wait_for_everyone()
        results[source] = {"taxonomy": taxonomy, **metrics, "agreement": agreement}
    return str(labels_dir), results

"""Data: sources on disk or the Hub, topic-pure packing, stage mixtures, and the bundled demo corpus."""

from hf_cpt.data.corpus import Corpus, load_corpus
from hf_cpt.data.demo import DEMO_CORPUS_PATH, demo_snippets_path
from hf_cpt.data.mixture import (
    StaticMixtureSampler,
    allocate_blocks,
    allocate_group_blocks,
    flatten_mixture,
    normalize_ratios,
    plan_stage,
)
from hf_cpt.data.packing import GROUP_COLUMN, group_name, pack_documents, source_of, tokenize_documents
from hf_cpt.data.recipes import MIXTURES, TOPIC_SOURCES, resolve_mixture
from hf_cpt.data.sources import load_source

__all__ = [
    "DEMO_CORPUS_PATH",
    "GROUP_COLUMN",
    "MIXTURES",
    "TOPIC_SOURCES",
    "Corpus",
    "StaticMixtureSampler",
    "allocate_blocks",
    "allocate_group_blocks",
    "demo_snippets_path",
    "flatten_mixture",
    "group_name",
    "load_corpus",
    "load_source",
    "normalize_ratios",
    "pack_documents",
    "plan_stage",
    "resolve_mixture",
    "source_of",
    "tokenize_documents",
]

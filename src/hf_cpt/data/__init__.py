"""Data: sources on disk or the Hub, topic-pure packing, corpora prepared once and memory-mapped, stage mixture
specs, and the bundled demo corpus."""

from hf_cpt.data.bundled import DEMO_CORPUS_PATH, demo_snippets_path
from hf_cpt.data.corpus import Corpus, load_corpus
from hf_cpt.data.mixtures import MIXTURES, TOPIC_SOURCES, flatten_mixture, normalize_ratios, resolve_mixture
from hf_cpt.data.packing import (
    GROUP_COLUMN,
    collate_blocks,
    group_name,
    pack_documents,
    source_of,
    tokenize_documents,
)
from hf_cpt.data.prepare import load_prepared, prepare_corpus
from hf_cpt.data.sources import load_source

__all__ = [
    "DEMO_CORPUS_PATH",
    "GROUP_COLUMN",
    "MIXTURES",
    "TOPIC_SOURCES",
    "Corpus",
    "collate_blocks",
    "demo_snippets_path",
    "flatten_mixture",
    "group_name",
    "load_corpus",
    "load_prepared",
    "load_source",
    "normalize_ratios",
    "pack_documents",
    "prepare_corpus",
    "resolve_mixture",
    "source_of",
    "tokenize_documents",
]

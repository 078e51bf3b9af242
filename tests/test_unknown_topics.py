"""`unknown_topics` of the recipe: topic values outside a source's taxonomy are refused, or counted as `Others`.

Through the recipe's own parser (`RecipeParser`, a YAML file) and corpus loader (`load_run_corpus`).
"""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import group_vocabulary, write_corpus

from hf_cpt.data import load_corpus
from hf_cpt.data.packing import read_group_ids
from hf_cpt.run_config import RecipeParser

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "llama3_syne.py"
MISSPELT = "Law and Polcy"
SOURCES = ["web-en", "book-en", "web-cn"]


@pytest.fixture(scope="module")
def misspelt_corpus(tmp_path_factory) -> Path:
    """The test corpus, with web-en documents whose topic is misspelt (3 to train on, 1 to validate)."""
    root = write_corpus(tmp_path_factory.mktemp("misspelt"))
    words = group_vocabulary(0)
    for split, count in (("train", 3), ("validation", 1)):
        with open(root / "data" / "web-en" / f"{split}.jsonl", "a", encoding="utf-8") as file:
            for index in range(count):
                text = " ".join(words[(index + offset) % len(words)] for offset in range(45))
                file.write(json.dumps({"text": text, "topic": MISSPELT}) + "\n")
    return root


def _recipe_corpus(root: Path, tokenizer, tmp_path: Path, **fields):
    config = {
        "dataset_path": str(root),
        "output_dir": str(tmp_path / "run"),
        "max_length": 32,
        "use_cpu": True,
        "stages": [{"name": "one", "num_tokens": 32 * 8, "mixture": {"web-en": 0.6, "book-en": 0.2, "web-cn": 0.2}}],
        **fields,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    args, training = RecipeParser().parse_args_and_config(["--config", str(path)])
    load_run_corpus = runpy.run_path(str(RECIPE))["load_run_corpus"]
    return load_run_corpus(args, training, tokenizer, args.dataset_path)


def _blocks(dataset, group: str) -> list[list[int]]:
    ids = read_group_ids(dataset)
    rows = np.flatnonzero(ids == dataset.features["group"].names.index(group))
    return [list(row) for row in dataset.select(rows)["input_ids"]]


def test_topic_values_outside_the_taxonomy_are_refused_naming_the_option(misspelt_corpus, tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"\['Law and Polcy'\]; relabel .* or set unknown_topics: others to count"):
        _recipe_corpus(misspelt_corpus, tokenizer, tmp_path)


def test_unknown_topics_others_counts_them_as_the_sources_others(misspelt_corpus, tokenizer, tmp_path):
    raw = load_corpus(str(misspelt_corpus), SOURCES, tokenizer, 32, topic_sources=["web-en", "web-cn"])
    corpus = _recipe_corpus(misspelt_corpus, tokenizer, tmp_path, unknown_topics="others")
    assert f"web-en/{MISSPELT}" in raw.group_names
    # The sources in the recipe's order (YAML's sorted mixture keys), each source's topics sorted.
    assert corpus.group_names == [
        "book-en", "web-cn/Philosophy", "web-en/Law and Policy", "web-en/Medicine and Health", "web-en/Others",
    ]  # fmt: skip
    assert corpus.validation.features["group"].names == corpus.group_names
    for split in ("train", "validation"):
        ours, theirs = getattr(corpus, split), getattr(raw, split)
        assert _blocks(ours, "web-en/Others") == _blocks(theirs, f"web-en/{MISSPELT}")
        for group in ("web-en/Law and Policy", "book-en", "web-cn/Philosophy"):
            assert _blocks(ours, group) == _blocks(theirs, group), (split, group)


def test_unknown_topics_takes_error_or_others_only(misspelt_corpus, tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"unknown_topics is 'maybe'; set it to error .* or others"):
        _recipe_corpus(misspelt_corpus, tokenizer, tmp_path, unknown_topics="maybe")

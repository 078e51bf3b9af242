"""Bits per byte: the tokenizer-independent view of validation perplexity, per group and per source."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from hf_cpt.perplexity import perplexity_by_group
from hf_cpt.reporting import bits_per_byte_by_source, perplexity_section
from hf_cpt.testing import tiny_llama, word_tokenizer

WORDS = ["alpha", "beta", "gamma", "délta"]


def test_bits_per_byte_is_the_nll_over_the_bytes_of_the_predicted_text():
    tokenizer = word_tokenizer(WORDS)
    torch.manual_seed(0)
    model = tiny_llama(vocab_size=len(tokenizer))
    texts = ["alpha beta gamma", "gamma délta", "beta alpha délta délta"]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(t)["input_ids"] for t in texts], "group": [0, 1, 0]})
    table = perplexity_by_group(model, dataset, ["web-en/x", "web-cn/y"], batch_size=2, tokenizer=tokenizer)
    # The first token of a document is not predicted, so its bytes do not count; "é" is two bytes.
    assert table["web-en/x"]["bytes"] == len(b"beta gamma") + len("alpha délta délta".encode())
    assert table["web-cn/y"]["bytes"] == len("délta".encode()) == 6
    for entry in table.values():
        assert entry["bits_per_byte"] == pytest.approx(entry["nll"] / (math.log(2) * entry["bytes"]))
    without = perplexity_by_group(model, dataset, ["web-en/x", "web-cn/y"], batch_size=2)
    assert "bits_per_byte" not in without["web-en/x"]
    assert without["web-en/x"]["nll"] == pytest.approx(table["web-en/x"]["nll"])


def test_a_sources_bits_per_byte_pools_its_topics_by_bytes():
    table = {
        "web-en/a": {"perplexity": 1.0, "nll": 10.0, "tokens": 5.0, "bytes": 20.0},
        "web-en/b": {"perplexity": 1.0, "nll": 30.0, "tokens": 5.0, "bytes": 60.0},
        "book-en": {"perplexity": 1.0, "nll": 7.0, "tokens": 5.0, "bytes": 10.0},
    }
    assert bits_per_byte_by_source(table) == pytest.approx(
        {"web-en": 40 / (math.log(2) * 80), "book-en": 7 / (math.log(2) * 10)}
    )
    section = perplexity_section({"before": table})
    assert "### Bits per byte, per source" in section and "### Bits per byte, per topic" in section
    assert f"| web-en | {40 / (math.log(2) * 80):.2f} |" in section
    assert "Bits per byte" not in perplexity_section({"before": {k: dict(v, bytes=0) for k, v in table.items()}})

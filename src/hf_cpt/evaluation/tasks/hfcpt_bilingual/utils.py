"""Loads the bundled questions from the JSONL files next to this module.

lm-eval resolves a relative `data_files` path against the working directory, not the YAML, so the
task YAMLs load their data through these functions (`custom_dataset`), which find the files from
their own location wherever the package is installed.
"""

from __future__ import annotations

from pathlib import Path

import datasets

_HERE = Path(__file__).parent


def _load(filename: str) -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {"test": datasets.load_dataset("json", data_files=str(_HERE / filename), split="train")}
    )


def load_english(**_: object) -> datasets.DatasetDict:
    """The English questions as a one-split (`test`) dataset."""
    return _load("en.jsonl")


def load_chinese(**_: object) -> datasets.DatasetDict:
    """The Chinese questions as a one-split (`test`) dataset."""
    return _load("zh.jsonl")

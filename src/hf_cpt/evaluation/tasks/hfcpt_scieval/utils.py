"""Splits SciEval by subject, keeping only its four-option multiple-choice questions.

SciEval mixes multiple-choice, judgement and fill-in questions across physics, chemistry and
biology; Table 6 of the paper reports the multiple-choice accuracy per subject.
"""

from __future__ import annotations

import datasets


def _subject(dataset: datasets.Dataset, category: str) -> datasets.Dataset:
    return dataset.filter(lambda doc: doc["category"] == category and doc["type"] == "multiple-choice")


def physics(dataset: datasets.Dataset) -> datasets.Dataset:
    """The physics multiple-choice questions."""
    return _subject(dataset, "physics")


def chemistry(dataset: datasets.Dataset) -> datasets.Dataset:
    """The chemistry multiple-choice questions."""
    return _subject(dataset, "chemistry")


def biology(dataset: datasets.Dataset) -> datasets.Dataset:
    """The biology multiple-choice questions."""
    return _subject(dataset, "biology")

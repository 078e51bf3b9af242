"""The dataset card of a synthetic QA dataset: where every pair came from and what was filtered out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hf_cpt.cards import render_card


def _size_category(count: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return name
    return "1M<n<10M"


def discipline_table(report: Mapping[str, Any]) -> str:
    """Per discipline: items asked, accepted, accept rate and pairs kept after the filters (markdown)."""
    kept = report["kept_per_discipline"]
    lines = ["| discipline | asked | accepted | accept rate | kept after filters |", "|---|---:|---:|---:|---:|"]
    for discipline, entry in report["accept_rates"].items():
        counts = f"{entry['total']} | {entry['accepted']} | {entry['rate']:.0%} | {kept.get(discipline, 0)}"
        lines.append(f"| {discipline} | {counts} |")
    return "\n".join(lines)


def filter_lines(report: Mapping[str, Any]) -> list[str]:
    """What was asked, rejected and filtered out, as markdown bullet lines."""
    rejected = ", ".join(f"{reason}: {count}" for reason, count in sorted(report["rejected"].items())) or "none"
    dropped = report["filters"]["dropped"]
    dropped = ", ".join(f"{reason}: {count}" for reason, count in sorted(dropped.items()) if count) or "none"
    return [
        f"- items asked: {report['items']}; failed requests: {report['failed']}",
        f"- rejected when parsing and validating: {rejected}",
        f"- dropped as exact duplicates, near duplicates (MinHash) or overlaps with "
        f"{report['filters'].get('benchmark_texts', 0)} benchmark questions: {dropped}",
    ]


def synthetic_dataset_card(report: Mapping[str, Any], sample: Mapping[str, Any] | None = None) -> str:
    """A Hub dataset card (`templates/synthetic_dataset_card.md`) from a `SynthQAGenerator` report and a sample pair."""
    from huggingface_hub import DatasetCardData

    card_data = DatasetCardData(
        language=["en"],
        task_categories=["text-generation", "question-answering"],
        tags=["synthetic", "continual-pretraining", "hf-cpt"],
        size_categories=[_size_category(report["kept"])],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    return render_card(
        "synthetic_dataset_card.md",
        card_data,
        report=report,
        sampling=json.dumps(report["sampling"]),
        discipline_table=discipline_table(report),
        filter_lines="\n".join(filter_lines(report)),
        sample=sample,
    )

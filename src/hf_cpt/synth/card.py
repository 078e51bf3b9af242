"""The dataset card of a synthetic QA dataset: where every pair came from and what was filtered out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hf_cpt.hub import PAPER_CITATION


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
    """A Hub dataset card (YAML header and markdown) from a `SynthQAGenerator` report and one sample pair."""
    sampling = report["sampling"]
    lines = [
        "---",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "- question-answering",
        "tags:",
        "- synthetic",
        "- continual-pretraining",
        "- hf-cpt",
        f"size_categories:\n- {_size_category(report['kept'])}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train-*",
        "---",
        "",
        f"# Synthetic {'code' if report['task'] == 'code_qa' else 'scientific'} QA pairs",
        "",
        f"{report['kept']:,} question–answer pairs written by `{report['model']}` for continual pre-training, "
        "following §3.3 of *Towards Effective and Efficient Continual Pre-training of Large Language Models* "
        "(Llama-3-SynE, arXiv 2407.18743). Made with hf-cpt's `SynthQAGenerator`; the `text` column joins "
        "problem and solution for pre-training.",
        "",
        "## Provenance",
        "",
        f"- model: `{report['model']}` through the `{report['backend']}` backend",
        f"- prompt: `{report['prompt_version']}` (fingerprint `{report['prompt_fingerprint']}`)"
        + (" — the paper's Appendix B prompt, word for word" if report["task"] == "scientific_qa" else ""),
        f"- sampling: `{json.dumps(sampling)}`, {report['samples_per_seed']} pair(s) per seed",
        f"- generated completion tokens in the kept pairs: {report['completion_tokens']:,}",
        "",
        "## Counts per discipline",
        "",
        discipline_table(report),
        "",
        "## Filters",
        "",
        *filter_lines(report),
        "",
    ]
    if sample is not None:
        lines += [
            "## A sample pair",
            "",
            "**Problem**",
            "",
            sample["problem"],
            "",
            "**Solution**",
            "",
            sample["solution"],
            "",
        ]
    lines += [
        "## Caveats",
        "",
        "The pairs are written by a language model and are not checked by people: solutions may be wrong. "
        "The paper found that pre-training on them helps even so (§4.2).",
        "",
        "## Citation",
        "",
        "```bibtex",
        PAPER_CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)

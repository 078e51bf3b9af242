"""Markdown reports over evaluation results: the paper side by side, and forgetting across a CPT run.

Both are pure functions over scores, so they work on saved `evaluation.json` files without lm-eval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hf_cpt.evaluation.benchmarks import BASE_MODEL, BENCHMARKS, CPT_MODEL
from hf_cpt.evaluation.runner import EvaluationResult


def _scores(result: EvaluationResult | Mapping[str, Any]) -> dict[str, float]:
    """Scores from a result, its `to_dict()` form, or a plain `{benchmark: score}` mapping."""
    if isinstance(result, EvaluationResult):
        return dict(result.scores)
    if "scores" in result and isinstance(result["scores"], Mapping):
        return EvaluationResult.from_dict(result).scores
    return {str(k): float("nan") if v is None else float(v) for k, v in result.items()}


def _fmt(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


def _title(name: str) -> str:
    return BENCHMARKS[name].title if name in BENCHMARKS else name


def comparison_table(result: EvaluationResult | Mapping[str, Any], *, label: str = "This model") -> str:
    """A markdown table: each benchmark's score next to the paper's Llama-3-8B and Llama-3-SynE.

    Benchmarks without published numbers (the bundled ones) show "–" in the paper columns.
    """
    scores = _scores(result)
    lines = [
        f"| Benchmark | Shots | {label} | {BASE_MODEL} (paper) | {CPT_MODEL} (paper) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, score in scores.items():
        benchmark = BENCHMARKS.get(name)
        shots = str(benchmark.num_fewshot) if benchmark else "–"
        paper = benchmark.paper_scores if benchmark else {}
        base, cpt = _fmt(paper.get(BASE_MODEL)), _fmt(paper.get(CPT_MODEL))
        lines.append(f"| {_title(name)} | {shots} | {_fmt(score)} | {base} | {cpt} |")
    return "\n".join(lines) + "\n"


def forgetting_report(
    before: EvaluationResult | Mapping[str, Any],
    after: EvaluationResult | Mapping[str, Any],
    *,
    threshold: float = 1.0,
) -> str:
    """A markdown table of each benchmark before and after training, the change, and a flag.

    A change below `-threshold` points is flagged "⚠ drop": the signal of forgetting the paper's
    data mixture is designed to prevent (Table 5: MMLU 66.60 → 65.19). Benchmarks missing on
    either side are listed with "–".
    """
    if threshold < 0:
        raise ValueError(f"threshold={threshold} is negative; give the drop in points as a positive number.")
    old, new = _scores(before), _scores(after)
    lines = ["| Benchmark | Before | After | Change | |", "|---|---:|---:|---:|---|"]
    for name in [*old, *(n for n in new if n not in old)]:
        a, b = old.get(name), new.get(name)
        change = None if a is None or b is None or math.isnan(a) or math.isnan(b) else b - a
        flag = "⚠ drop" if change is not None and change < -threshold else ""
        shown = "–" if change is None else f"{change:+.2f}"
        lines.append(f"| {_title(name)} | {_fmt(a)} | {_fmt(b)} | {shown} | {flag} |")
    return "\n".join(lines) + "\n"

"""Markdown reports over evaluation results: the paper side by side, and forgetting across a CPT run.

Both are pure functions over scores, so they work on saved `evaluation.json` files without lm-eval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hf_cpt.evaluation.benchmarks import BASE_MODEL, BENCHMARKS, CPT_MODEL
from hf_cpt.evaluation.runner import EvaluationResult


def _result(result: EvaluationResult | Mapping[str, Any]) -> EvaluationResult:
    """A result from itself, its `to_dict()` form, or a plain `{benchmark: score}` mapping (no errors)."""
    if isinstance(result, EvaluationResult):
        return result
    if "scores" in result and isinstance(result["scores"], Mapping):
        return EvaluationResult.from_dict(result)
    return EvaluationResult(scores={str(k): float("nan") if v is None else float(v) for k, v in result.items()})


def _fmt(value: float | None, error: float | None = None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f}" if error is None else f"{value:.2f} ± {error:.2f}"


def _title(name: str) -> str:
    return BENCHMARKS[name].title if name in BENCHMARKS else name


def comparison_table(result: EvaluationResult | Mapping[str, Any], *, label: str = "This model") -> str:
    """A markdown table: each benchmark's score next to the paper's Llama-3-8B and Llama-3-SynE.

    Benchmarks without published numbers (the bundled ones) show "–" in the paper columns; a score
    lm-eval gave a standard error shows it ("61.00 ± 7.80").
    """
    result = _result(result)
    lines = [
        f"| Benchmark | Shots | {label} | {BASE_MODEL} (paper) | {CPT_MODEL} (paper) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, score in result.scores.items():
        benchmark = BENCHMARKS.get(name)
        shots = str(benchmark.num_fewshot) if benchmark else "–"
        paper = benchmark.paper_scores if benchmark else {}
        base, cpt = _fmt(paper.get(BASE_MODEL)), _fmt(paper.get(CPT_MODEL))
        lines.append(f"| {_title(name)} | {shots} | {_fmt(score, result.standard_error(name))} | {base} | {cpt} |")
    return "\n".join(lines) + "\n"


def forgetting_report(
    before: EvaluationResult | Mapping[str, Any],
    after: EvaluationResult | Mapping[str, Any],
    *,
    threshold: float = 1.0,
) -> str:
    """A markdown table of each benchmark before and after training, the change, and a flag.

    A change below `-threshold` points is flagged "⚠ drop": the signal of forgetting the paper's
    data mixture is designed to prevent (Table 5: MMLU 66.60 → 65.19). Where lm-eval gave standard
    errors on both sides, scores show "± SE", the change its standard error (the two combined, as
    independent samples), and a change within two of them is marked "not significant" instead: on a
    few dozen questions a point or two is noise. Benchmarks missing on either side are listed with "–".
    """
    if threshold < 0:
        raise ValueError(f"threshold={threshold} is negative; give the drop in points as a positive number.")
    old, new = _result(before), _result(after)
    lines = ["| Benchmark | Before | After | Change | |", "|---|---:|---:|---:|---|"]
    for name in [*old.scores, *(n for n in new.scores if n not in old.scores)]:
        a, b = old.scores.get(name), new.scores.get(name)
        error_a, error_b = old.standard_error(name), new.standard_error(name)
        change = None if a is None or b is None or math.isnan(a) or math.isnan(b) else b - a
        error = math.hypot(error_a, error_b) if error_a is not None and error_b is not None else None
        if change is None:
            flag = ""
        elif error is not None and abs(change) <= 2 * error:
            flag = "not significant"
        else:
            flag = "⚠ drop" if change < -threshold else ""
        shown = "–" if change is None else f"{change:+.2f}" + ("" if error is None else f" ± {error:.2f}")
        lines.append(f"| {_title(name)} | {_fmt(a, error_a)} | {_fmt(b, error_b)} | {shown} | {flag} |")
    return "\n".join(lines) + "\n"

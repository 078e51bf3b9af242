"""The topic re-weighting rule of Llama-3-SynE (§3.2.1), exactly as the paper writes it.

After round t, with validation perplexity p_i(t) per topic i:

    Δp_i = p_i(t) − p_i(t−1)
    δ_i  = Δp_i / max_j |Δp_j|
    f_i  = 1 + α · δ_i · w_i           (w_i: importance of topic i, α: step size)
    r_i  ← r_i · f_i / Σ_j r_j · f_j

A topic whose perplexity rose (forgetting) gets more data, one that improved gets less. The new
proportions keep the total of the ones given, so the rule can act on a subset of topics (e.g. the topics
of one source) without moving that subset's share; for proportions summing to 1 it is the paper's rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

Topic = TypeVar("Topic")


@dataclass(frozen=True)
class MixtureUpdate:
    """Every term of one application of the rule, by topic, for logs and plots."""

    delta_ppl: dict  # Δp_i
    delta: dict  # δ_i
    factor: dict  # f_i
    proportions: dict  # r_i after the update


def _check_perplexities(name: str, values: Mapping, topics: list) -> None:
    for topic in topics:
        if topic not in values:
            raise ValueError(f"{name} has no value for topic {topic!r}; measure every topic being re-weighted.")
        value = values[topic]
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"{name}[{topic!r}] is {value}; perplexity must be finite and positive (check that topic's "
                "validation documents and the model's numerics)."
            )


def check_rule_settings(
    alpha: float, importance: Mapping[Topic, float] | None = None, topics: Sequence[Topic] = (), *, field: str = "alpha"
) -> dict[Topic, float]:
    """Check the rule's settings once and return the importance w_i of each of `topics` (default 1).

    α must be a finite number >= 0; each w_i a finite number >= 0 for one of `topics`, with α · w_i below 1 so
    that f_i = 1 + α · δ_i · w_i stays positive. `field` names α in the errors (`mixture_alpha` in a `CPTConfig`,
    which checks α alone, before the topics are known).
    """
    if alpha is None or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"{field} is {alpha}; set the step size to a number >= 0 (0 leaves the mixture unchanged).")
    importance = dict(importance or {})
    for topic, weight in importance.items():
        if topic not in topics:
            raise ValueError(
                f"importance names topic {topic!r}, which is not among the proportions (the topics re-weighted); "
                "remove it."
            )
        if weight is None or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"importance[{topic!r}] is {weight}; set it to a finite number >= 0.")
    weights = {topic: float(importance.get(topic, 1.0)) for topic in topics}
    too_large = [topic for topic in topics if alpha * weights[topic] >= 1]
    if too_large:
        raise ValueError(
            f"{field} x importance is {alpha * weights[too_large[0]]} for topic {too_large[0]!r}; keep it below 1 "
            "so that f_i = 1 + alpha * delta_i * w_i stays positive."
        )
    return weights


def compute_mixture_update(
    proportions: Mapping[Topic, float],
    ppl_prev: Mapping[Topic, float],
    ppl_now: Mapping[Topic, float],
    importance: Mapping[Topic, float] | None = None,
    alpha: float = 0.5,
    min_proportion: float = 0.0,
) -> MixtureUpdate:
    """Apply the §3.2.1 rule once and return all its terms (see `update_mixture`)."""
    topics = list(proportions)
    if not topics:
        raise ValueError("proportions is empty; give the current proportion of every topic to re-weight.")
    for topic, value in proportions.items():
        if value is None or not math.isfinite(value) or value < 0:
            raise ValueError(f"proportions[{topic!r}] is {value}; set every proportion to a finite number >= 0.")
    total = float(sum(proportions.values()))
    if total <= 0:
        raise ValueError("proportions are all zero; give at least one topic a positive proportion.")
    weights = check_rule_settings(alpha, importance, topics)
    if not 0 <= min_proportion * len(topics) <= 1:
        raise ValueError(
            f"min_proportion is {min_proportion}; with {len(topics)} topics set it in [0, {1 / len(topics):.4g}]."
        )
    _check_perplexities("ppl_prev", ppl_prev, topics)
    _check_perplexities("ppl_now", ppl_now, topics)

    delta_ppl = {topic: float(ppl_now[topic]) - float(ppl_prev[topic]) for topic in topics}
    largest = max(abs(value) for value in delta_ppl.values())
    if largest == 0:
        unchanged = dict.fromkeys(topics, 0.0)
        return MixtureUpdate(delta_ppl, unchanged, dict.fromkeys(topics, 1.0), dict(proportions))
    delta = {topic: value / largest for topic, value in delta_ppl.items()}
    factor = {topic: 1.0 + alpha * delta[topic] * weights[topic] for topic in topics}
    norm = sum(proportions[topic] * factor[topic] for topic in topics)
    updated = {topic: total * proportions[topic] * factor[topic] / norm for topic in topics}
    if min_proportion > 0:
        updated = _apply_floor(updated, min_proportion * total)
    return MixtureUpdate(delta_ppl, delta, factor, updated)


def _apply_floor(proportions: dict, floor: float) -> dict:
    """Raise proportions below `floor` to it, scaling the others down to keep the total (water-filling)."""
    total = sum(proportions.values())
    pinned: set = set()
    while True:
        free = [topic for topic in proportions if topic not in pinned]
        free_total = sum(proportions[topic] for topic in free)
        budget = total - floor * len(pinned)
        scaled = {topic: proportions[topic] * budget / free_total for topic in free} if free_total > 0 else {}
        below = {topic for topic, value in scaled.items() if value < floor}
        if not below:
            return {topic: floor if topic in pinned else scaled[topic] for topic in proportions}
        pinned |= below


def update_mixture(
    proportions: Mapping[Topic, float],
    ppl_prev: Mapping[Topic, float],
    ppl_now: Mapping[Topic, float],
    importance: Mapping[Topic, float] | None = None,
    alpha: float = 0.5,
    min_proportion: float = 0.0,
) -> dict[Topic, float]:
    """New topic proportions from the change of per-topic perplexity over the last round (§3.2.1).

    Args:
        proportions: topic -> current proportion r_i(t−1).
        ppl_prev: topic -> validation perplexity after the previous round, p_i(t−1).
        ppl_now: topic -> validation perplexity after this round, p_i(t).
        importance: topic -> importance w_i (default 1 for every topic).
        alpha: step size α (the paper does not publish its value). α · w_i must stay below 1.
        min_proportion: floor on every proportion, as a fraction of the total; 0 (off) is the paper's
            rule. An extension beyond the paper for long runs where a topic that keeps improving would
            otherwise fade out.

    Returns:
        topic -> r_i(t), summing to the total of `proportions`. When no perplexity moved the proportions
        come back unchanged.

    Example (worked by hand): r = (0.5, 0.5), Δp = (+2, −1), α = 0.5 → δ = (1, −0.5),
    f = (1.5, 0.75), r = (0.75, 0.375) / 1.125 = (2/3, 1/3).
    """
    return compute_mixture_update(proportions, ppl_prev, ppl_now, importance, alpha, min_proportion).proportions

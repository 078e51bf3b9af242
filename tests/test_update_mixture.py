"""The §3.2.1 re-weighting rule on numbers worked by hand."""

import math

import pytest

from hf_cpt import update_mixture
from hf_cpt.mixture import compute_mixture_update


def test_two_topics_worked_by_hand():
    # Δp = (+2, −1) → δ = (1, −0.5); α = 0.5 → f = (1.5, 0.75); r·f = (0.75, 0.375) / 1.125.
    update = compute_mixture_update({"a": 0.5, "b": 0.5}, {"a": 10.0, "b": 8.0}, {"a": 12.0, "b": 7.0}, alpha=0.5)
    assert update.delta_ppl == pytest.approx({"a": 2.0, "b": -1.0})
    assert update.delta == pytest.approx({"a": 1.0, "b": -0.5})
    assert update.factor == pytest.approx({"a": 1.5, "b": 0.75})
    assert update.proportions == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_ties_for_the_largest_change_both_reach_one():
    # Δp = (+1, −1, 0) → δ = (1, −1, 0); α = 0.2 → f = (1.2, 0.8, 1); r·f = (0.24, 0.24, 0.5) / 0.98.
    new = update_mixture(
        {"a": 0.2, "b": 0.3, "c": 0.5}, {"a": 10, "b": 10, "c": 10}, {"a": 11, "b": 9, "c": 10}, alpha=0.2
    )
    assert new == pytest.approx({"a": 0.24 / 0.98, "b": 0.24 / 0.98, "c": 0.5 / 0.98})


def test_importance_scales_each_topics_step():
    # δ = (−1, 0.5); α = 0.4, w = (1, 2) → f = (0.6, 1.4); r·f = (0.3, 0.7), already summing to 1.
    new = update_mixture({"a": 0.5, "b": 0.5}, {"a": 9, "b": 4}, {"a": 6, "b": 5.5}, importance={"b": 2.0}, alpha=0.4)
    assert new == pytest.approx({"a": 0.3, "b": 0.7})


def test_a_subset_of_topics_keeps_its_total_share():
    # r = (0.1, 0.3) of a source with 0.4: f = (1.5, 0.5) → (0.15, 0.15) / 0.3 × 0.4.
    new = update_mixture({"a": 0.1, "b": 0.3}, {"a": 5, "b": 5}, {"a": 6, "b": 4}, alpha=0.5)
    assert new == pytest.approx({"a": 0.2, "b": 0.2})


def test_a_single_topic_keeps_its_proportion():
    assert update_mixture({"a": 0.3}, {"a": 5.0}, {"a": 9.0}, alpha=0.5) == pytest.approx({"a": 0.3})


def test_no_change_in_perplexity_returns_the_proportions_unchanged():
    update = compute_mixture_update({"a": 0.2, "b": 0.3}, {"a": 4.0, "b": 6.0}, {"a": 4.0, "b": 6.0}, alpha=0.5)
    assert update.proportions == {"a": 0.2, "b": 0.3}
    assert update.factor == {"a": 1.0, "b": 1.0}


def test_floor_is_an_opt_in_extension():
    # Without the floor: (2/3, 1/3). With a floor of 0.4: b is raised to 0.4, a keeps the rest.
    args = ({"a": 0.5, "b": 0.5}, {"a": 10.0, "b": 8.0}, {"a": 12.0, "b": 7.0})
    assert update_mixture(*args, alpha=0.5, min_proportion=0.4) == pytest.approx({"a": 0.6, "b": 0.4})


@pytest.mark.parametrize(
    ("ppl_now", "message"),
    [
        ({"a": math.nan, "b": 5.0}, r"ppl_now\['a'\] is nan; perplexity must be finite and positive"),
        ({"a": math.inf, "b": 5.0}, r"ppl_now\['a'\] is inf; perplexity must be finite and positive"),
        ({"a": 5.0}, r"ppl_now has no value for topic 'b'; measure every topic being re-weighted"),
    ],
)
def test_bad_perplexities_fail_with_one_sentence(ppl_now, message):
    with pytest.raises(ValueError, match=message):
        update_mixture({"a": 0.5, "b": 0.5}, {"a": 5.0, "b": 5.0}, ppl_now, alpha=0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.1}, r"alpha is -0.1; set the step size to a number >= 0"),
        ({"alpha": 1.0}, r"alpha x importance is 1.0 for topic 'a'; keep it below 1"),
        ({"alpha": 0.5, "importance": {"z": 1.0}}, r"importance names topic 'z', which is not among the proportions"),
        ({"alpha": 0.5, "min_proportion": 0.6}, r"min_proportion is 0.6; with 2 topics set it in \[0, 0.5\]"),
    ],
)
def test_bad_settings_fail_with_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        update_mixture({"a": 0.5, "b": 0.5}, {"a": 5.0, "b": 5.0}, {"a": 6.0, "b": 4.0}, **kwargs)

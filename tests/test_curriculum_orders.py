"""Difficulty and discipline orders: monotone equal groups, exact discipline sequences, one-sentence errors."""

import numpy as np
import pytest

from hf_cpt import TopicMixtureSampler
from hf_cpt.curriculum import curriculum_order, difficulty_groups


def test_ten_difficulty_groups_have_equal_counts_and_rising_perplexity():
    scores = np.random.default_rng(0).lognormal(2.0, 1.0, size=1003)
    groups = difficulty_groups(scores)
    counts = np.bincount(groups)
    assert len(counts) == 10 and counts.max() - counts.min() <= 1
    for low, high in zip(range(9), range(1, 10), strict=True):
        assert scores[groups == low].max() <= scores[groups == high].min()


def test_low_to_high_plays_the_groups_in_order_and_is_deterministic_by_seed():
    scores = np.random.default_rng(1).lognormal(2.0, 1.0, size=200)
    order = curriculum_order("LH", scores, seed=3)
    assert sorted(order.tolist()) == list(range(200))
    assert np.all(np.diff(difficulty_groups(scores)[order]) >= 0)
    assert np.array_equal(order, curriculum_order("LH", scores, seed=3))
    assert not np.array_equal(order, curriculum_order("LH", scores, seed=4))  # shuffled within groups
    assert np.all(np.diff(difficulty_groups(scores)[curriculum_order("HL", scores)]) <= 0)
    assert sorted(curriculum_order("RM", scores).tolist()) == list(range(200))


def test_discipline_orders_are_exact():
    disciplines = np.array(["physics", "biology", "chemistry", "physics"] * 5)
    physics, biochemistry = set(np.flatnonzero(disciplines == "physics")), set(np.flatnonzero(disciplines != "physics"))
    pb = curriculum_order("PB", disciplines=disciplines)
    assert set(pb[:10]) == physics and set(pb[10:]) == biochemistry
    bp = curriculum_order("BP", disciplines=disciplines)
    assert set(bp[:10]) == biochemistry and set(bp[10:]) == physics
    pbp = curriculum_order("PBP", disciplines=disciplines)
    assert set(pbp[:5]) | set(pbp[15:]) == physics and set(pbp[5:15]) == biochemistry


def test_a_curriculum_order_inside_the_mixture_keeps_the_cross_topic_proportions():
    topics = np.random.default_rng(2).permutation(np.repeat([0, 1], [300, 300]))
    scores = np.random.default_rng(3).lognormal(2.0, 1.0, size=600)
    members = np.flatnonzero(topics == 0)
    sampler = TopicMixtureSampler(topics, {0: 0.25, 1: 0.75}, seed=0, num_samples=1200)
    plain = sampler.indices(0, 1200)
    sampler.set_topic_order(0, members[curriculum_order("LH", scores[members])])
    curriculum = sampler.indices(0, 1200)
    assert np.array_equal(topics[curriculum], topics[plain])  # the interleave across topics is unchanged
    drawn = curriculum[topics[curriculum] == 0][:300]
    assert np.all(np.diff(difficulty_groups(scores[members])[np.searchsorted(members, drawn)]) >= 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: curriculum_order("EASY", [1.0]), r"order 'EASY' is not a known curriculum; use one of"),
        (lambda: curriculum_order("LH", [1.0, float("nan")]), r"scores\[1\] is nan; every document needs a finite"),
        (lambda: curriculum_order("PB", disciplines=["physics", "math"]), r"document 1 is 'math'; select those"),
    ],
)
def test_bad_orders_fail_with_one_sentence(call, message):
    with pytest.raises(ValueError, match=message):
        call()

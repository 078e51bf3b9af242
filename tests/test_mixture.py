"""Static stage mixtures: ratios, block allocation, and the planned order of a stage."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset

from hf_cpt.data import (
    MIXTURES,
    StaticMixtureSampler,
    allocate_blocks,
    allocate_group_blocks,
    flatten_mixture,
    normalize_ratios,
    plan_stage,
    resolve_mixture,
)


def test_paper_stage_mixtures_flatten_to_source_token_shares():
    stage1 = flatten_mixture(MIXTURES["llama3_syne_stage1"])
    # Chinese : English = 2 : 8, then the per-source shares of the released scripts.
    assert stage1["web-cn"] == pytest.approx(0.2 * 0.70)
    assert stage1["book-cn"] == pytest.approx(0.2 * 0.20)
    assert stage1["web-en"] == pytest.approx(0.8 * 0.40)
    assert stage1["code-en"] == pytest.approx(0.8 * 0.15)
    assert sum(stage1.values()) == pytest.approx(1.0)
    assert "synthesis-en" not in stage1
    stage2 = flatten_mixture(MIXTURES["llama3_syne_stage2"])
    assert stage2["synthesis-en"] == pytest.approx(0.2)
    assert sum(v for k, v in stage2.items() if k.endswith("-cn")) == pytest.approx(0.1)
    assert sum(v for k, v in stage2.items() if k.endswith("-en") and k != "synthesis-en") == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ({"web-en": -0.1, "book-en": 1.0}, r"ratios.web-en is -0.1; set every ratio to a number >= 0"),
        ({"web-en": 0.0, "book-en": 0.0}, r"ratios are all zero; give at least one source a positive ratio"),
    ],
)
def test_bad_ratios_fail_with_one_sentence(ratios, message):
    with pytest.raises(ValueError, match=message):
        normalize_ratios(ratios)


def test_unknown_mixture_preset_names_the_choices():
    with pytest.raises(ValueError, match="is not a known preset"):
        resolve_mixture("stage9")


def test_largest_remainder_allocation_is_exact_and_within_one_block():
    weights = {"a": 0.14, "b": 0.01, "c": 0.04, "d": 0.32, "e": 0.49}
    counts = allocate_blocks(weights, 97)
    assert sum(counts.values()) == 97
    for key, weight in weights.items():
        assert abs(counts[key] - 97 * weight) < 1


def test_topics_inside_a_source_share_its_blocks_by_their_size():
    counts = allocate_group_blocks({"web-en": 0.5, "book-en": 0.5}, {"web-en/A": 30, "web-en/B": 10, "book-en": 5}, 40)
    assert counts == {"web-en/A": 15, "web-en/B": 5, "book-en": 20}


def test_sampler_draws_exact_counts_without_replacement_within_a_pass():
    groups = np.array([0] * 5 + [1] * 3 + [2] * 4)
    sampler = StaticMixtureSampler(groups, {0: 5, 1: 7, 2: 2}, seed=3)
    order = np.array(list(sampler))
    assert len(sampler) == 14
    assert np.bincount(groups[order], minlength=3).tolist() == [5, 7, 2]
    group0 = order[groups[order] == 0]
    assert sorted(group0.tolist()) == [0, 1, 2, 3, 4]  # one full pass, each block once
    group1 = order[groups[order] == 1].tolist()
    assert sorted(group1[:3]) == [5, 6, 7] and sorted(group1[3:6]) == [5, 6, 7]  # passes restart whole
    group2 = order[groups[order] == 2].tolist()
    assert len(set(group2)) == 2


def test_sampler_is_deterministic_by_seed():
    groups = np.repeat(np.arange(4), 50)
    counts = {0: 40, 1: 30, 2: 20, 3: 10}
    assert list(StaticMixtureSampler(groups, counts, seed=7)) == list(StaticMixtureSampler(groups, counts, seed=7))
    assert list(StaticMixtureSampler(groups, counts, seed=7)) != list(StaticMixtureSampler(groups, counts, seed=8))


def test_every_prefix_of_the_order_stays_within_two_blocks_of_each_share():
    groups = np.repeat(np.arange(5), 100)
    counts = {0: 140, 1: 10, 2: 40, 3: 320, 4: 490}
    order = np.array(list(StaticMixtureSampler(groups, counts, seed=0)))
    seen = np.zeros(5)
    for position, index in enumerate(order, start=1):
        seen[groups[index]] += 1
        expected = np.array([counts[g] for g in range(5)]) * position / 1000
        assert np.all(np.abs(seen - expected) <= 2), (position, seen, expected)


def blocks(groups: list[int], names: list[str], length: int = 8) -> Dataset:
    dataset = Dataset.from_dict({"input_ids": [[1] * length for _ in groups], "group": groups})
    return dataset.cast_column("group", ClassLabel(names=names))


def test_plan_stage_rounds_down_to_whole_optimizer_steps_and_hits_source_ratios():
    data = blocks([0] * 20 + [1] * 20 + [2] * 20, ["web-en/A", "web-en/B", "book-en"])
    sampler = plan_stage(data, {"web-en": 0.8, "book-en": 0.2}, num_tokens=8 * 103, global_batch_size=4)
    assert len(sampler) == 100
    ratios = sampler.target_ratios
    assert ratios["web-en/A"] + ratios["web-en/B"] == pytest.approx(0.8)
    assert ratios["book-en"] == pytest.approx(0.2)


def test_stage_with_zero_tokens_fails_at_start():
    data = blocks([0] * 4, ["web-en"])
    with pytest.raises(ValueError, match=r"stage2.num_tokens is 16, less than one optimizer step \(32 tokens"):
        plan_stage(data, {"web-en": 1.0}, num_tokens=16, global_batch_size=4, stage="stage2")


def test_source_in_the_mixture_without_blocks_fails_at_start():
    data = blocks([0] * 4, ["web-en"])
    with pytest.raises(ValueError, match="Source 'code-en' in the mixture of stage has no training blocks"):
        plan_stage(data, {"web-en": 0.5, "code-en": 0.5}, num_tokens=1000, global_batch_size=1)

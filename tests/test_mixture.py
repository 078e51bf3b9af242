"""Stage mixtures: ratio specs, and the planned sampler of a stage."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset

from hf_cpt.data import MIXTURES, flatten_mixture, normalize_ratios, resolve_mixture
from hf_cpt.mixture import TopicMixtureSampler, plan_stage, stage_group_weights


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


def test_topics_inside_a_source_share_its_weight_by_their_blocks():
    weights = stage_group_weights({"web-en": 0.5, "book-en": 0.5}, {"web-en/A": 30, "web-en/B": 10, "book-en": 5})
    assert weights == pytest.approx({"web-en/A": 0.375, "web-en/B": 0.125, "book-en": 0.5})


def test_every_prefix_of_a_stage_stays_within_two_blocks_of_each_share():
    groups = np.repeat(np.arange(5), 100)
    shares = np.array([0.14, 0.01, 0.04, 0.32, 0.49])
    sampler = TopicMixtureSampler(groups, dict(enumerate(shares)), seed=0, num_samples=1000)
    drawn = groups[sampler.indices(0, 1000)]
    seen = np.cumsum(np.eye(5)[drawn], axis=0)
    expected = np.outer(np.arange(1, 1001), shares)
    assert np.abs(seen - expected).max() <= 2


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

"""From a stage of the recipe (tokens to train, share per source) to the sampler that draws its blocks.

A stage says how many tokens to train on and which share goes to each source. With topic-pure blocks
of `max_length` tokens, that is a number of blocks, rounded down to whole optimizer steps, drawn by a
`TopicMixtureSampler` whose weight per group is the source's share split among the source's topics in
proportion to their blocks. The topic mixture (§3.2.1) then moves the shares of topics inside a source.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from datasets import Dataset

from hf_cpt.data.packing import GROUP_COLUMN, group_sizes, source_of
from hf_cpt.data.recipes import normalize_ratios
from hf_cpt.mixture.sampler import TopicMixtureSampler


def stage_group_weights(source_ratios: Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, float]:
    """Weight of every group: its source's share times the group's share of that source's blocks."""
    source_sizes: dict[str, int] = {}
    for group, size in sizes.items():
        source_sizes[source_of(group)] = source_sizes.get(source_of(group), 0) + size
    return {
        group: source_ratios[source_of(group)] * size / source_sizes[source_of(group)]
        for group, size in sizes.items()
        if source_of(group) in source_ratios and size > 0
    }


def plan_stage(
    blocks: Dataset,
    source_ratios: Mapping[str, float],
    num_tokens: int,
    global_batch_size: int,
    seed: int = 0,
    stage: str = "stage",
) -> TopicMixtureSampler:
    """The sampler of one stage over packed blocks with a `group` column.

    The stage's tokens become whole blocks, rounded down to whole optimizer steps
    (`global_batch_size` blocks = per-device batch x processes x accumulation), so every rank gets
    full batches; `len(sampler)` is that number of blocks.
    """
    max_length = len(blocks[0]["input_ids"]) if len(blocks) else 0
    names = blocks.features[GROUP_COLUMN].names
    group_ids = np.asarray(blocks[GROUP_COLUMN])
    sizes = group_sizes(group_ids, names)
    ratios = normalize_ratios(source_ratios, f"{stage}.mixture")
    for source in ratios:
        if not any(source_of(group) == source and size > 0 for group, size in sizes.items()):
            raise ValueError(
                f"Source {source!r} in the mixture of {stage} has no training blocks; load it or remove it "
                "from the mixture."
            )
    steps = num_tokens // max(1, max_length * global_batch_size)
    if steps <= 0:
        raise ValueError(
            f"{stage}.num_tokens is {num_tokens}, less than one optimizer step ({max_length * global_batch_size} "
            "tokens = max_length x batch size x processes x accumulation); raise num_tokens or remove the stage."
        )
    return TopicMixtureSampler(
        group_ids,
        stage_group_weights(ratios, sizes),
        seed=seed,
        num_samples=steps * global_batch_size,
        topic_names=names,
    )

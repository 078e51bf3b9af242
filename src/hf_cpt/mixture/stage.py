"""From a stage of the recipe (tokens to train, share per source) to the sampler that draws its blocks.

A stage says how many tokens to train on and which share goes to each source. With topic-pure blocks
of `max_length` tokens, that is a number of blocks, rounded down to whole optimizer steps, drawn by a
`TopicMixtureSampler` whose weight per group is the source's share split among the source's topics in
proportion to their blocks (their unused blocks, when earlier stages drew some). The topic mixture (§3.2.1)
then moves the shares of topics inside a source.

Each released token is trained once across the stages of a run (as the authors' data scripts do): a later
stage passes the blocks earlier stages drew as `exclude`, and draws them only once a source has no others left.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from datasets import Dataset

from hf_cpt.data.mixtures import normalize_ratios
from hf_cpt.data.packing import GROUP_COLUMN, group_sizes, read_group_ids, source_of
from hf_cpt.mixture.sampler import TopicMixtureSampler

logger = logging.getLogger(__name__)


def stage_group_weights(source_ratios: Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, float]:
    """Weight of every group: its source's share times the group's share of that source's blocks.

    A source of the mixture with no blocks in `sizes` is an error (it would silently be renormalized away).
    """
    source_sizes: dict[str, int] = {}
    for group, size in sizes.items():
        source_sizes[source_of(group)] = source_sizes.get(source_of(group), 0) + size
    missing = [source for source, ratio in source_ratios.items() if ratio > 0 and not source_sizes.get(source)]
    if missing:
        raise ValueError(
            f"Source {missing[0]!r} of the mixture has no blocks in the corpus (its groups: "
            f"{sorted(source_sizes)}); load that source or remove it from the mixture."
        )
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
    exclude: np.ndarray | None = None,
) -> TopicMixtureSampler:
    """The sampler of one stage over packed blocks with a `group` column.

    The stage's tokens become whole blocks, rounded down to whole optimizer steps
    (`global_batch_size` blocks = per-device batch x processes x accumulation), so every rank gets
    full batches; `len(sampler)` is that number of blocks.

    Args:
        exclude: blocks earlier stages drew (a boolean mask over `blocks` or their indices, e.g. the earlier
            sampler's `drawn_mask()`): drawn last, after every unused block of their topic. A source that
            runs out of unused blocks starts a new pass, with a warning naming it.
    """
    max_length = len(blocks[0]["input_ids"]) if len(blocks) else 0
    names = blocks.features[GROUP_COLUMN].names
    group_ids = read_group_ids(blocks)
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
    num_samples = steps * global_batch_size
    unused = sizes
    if exclude is not None:
        excluded = np.zeros(len(group_ids), dtype=bool)
        excluded[np.asarray(exclude)] = True
        unused = group_sizes(group_ids[~excluded], names)
        _warn_where_sources_run_out(ratios, sizes, unused, num_samples, stage)
    # Topics share their source by unused blocks, so they run out together; a source with none left by all.
    weights_by = {
        group: unused[group] if sum(unused[g] for g in sizes if source_of(g) == source_of(group)) else sizes[group]
        for group in sizes
    }
    return TopicMixtureSampler(
        group_ids,
        stage_group_weights(ratios, weights_by),
        seed=seed,
        num_samples=num_samples,
        topic_names=names,
        exclude=exclude,
    )


def _warn_where_sources_run_out(
    ratios: Mapping[str, float], sizes: Mapping[str, int], unused: Mapping[str, int], draws: int, stage: str
) -> None:
    for source, ratio in ratios.items():
        available = sum(count for group, count in unused.items() if source_of(group) == source)
        planned = round(ratio * draws)
        if planned > available:
            total = sum(count for group, count in sizes.items() if source_of(group) == source)
            logger.warning(
                "%s draws about %d blocks of %s but earlier stages left it %d unused (of %d): it starts a new "
                "pass and repeats about %d blocks.",
                stage,
                planned,
                source,
                available,
                total,
                planned - available,
            )


DRAWN_BLOCKS_NAME = "drawn_blocks.npz"


def save_drawn_blocks(path: str | Path, mask: np.ndarray, blocks: Dataset | None = None) -> None:
    """Write the blocks a stage drew (a boolean mask over the training blocks), one bit per block.

    The file also holds the number of blocks and, when `blocks` is given, the dataset's fingerprint, so a
    later stage cannot exclude them from another corpus by mistake.
    """
    fingerprint = getattr(blocks, "_fingerprint", "") if blocks is not None else ""
    np.savez_compressed(path, drawn=np.packbits(mask), num_blocks=len(mask), fingerprint=np.array(fingerprint))


def load_drawn_blocks(path: str | Path, blocks: Dataset | None = None) -> np.ndarray:
    """The boolean mask `save_drawn_blocks` wrote; a file or a stage folder holding `drawn_blocks.npz`.

    With `blocks`, checks that the mask was made for this very dataset (same rows, same fingerprint).
    """
    path = Path(path)
    if path.is_dir():
        path = path / DRAWN_BLOCKS_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"No drawn-blocks file at {str(path)!r}; give the folder of a finished stage (its model folder) or "
            "the drawn_mask() of that stage's sampler."
        )
    with np.load(path) as saved:
        num_blocks, fingerprint = int(saved["num_blocks"]), str(saved["fingerprint"])
        mask = np.unpackbits(saved["drawn"], count=num_blocks).astype(bool)
    if blocks is not None:
        ours = getattr(blocks, "_fingerprint", "")
        if num_blocks != len(blocks) or (fingerprint and ours and fingerprint != ours):
            raise ValueError(
                f"The drawn blocks in {str(path)!r} were recorded for another corpus ({num_blocks} blocks) than "
                f"these {len(blocks)}; load the corpus with the same sources, tokenizer and max_length as that stage."
            )
    return mask

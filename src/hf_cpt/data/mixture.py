"""Static stage mixtures, in tokens: ratios, block allocation and the planned sampling order.

A stage says how many tokens to train on and which share goes to each source. With topic-pure
blocks of `max_length` tokens, that becomes a number of blocks per group. The allocation rounds by
largest remainder, so every source ends within one block of its target. The order interleaves groups
deterministically (each group's draws spread evenly over the stage), so every prefix of the stage
is close to the target mixture too, and the order is the same on every rank and every restart.

Dynamic per-topic weights (§3.2.1) replace this sampler with `TopicMixtureSampler` at the seam
`CPTTrainer(train_sampler=...)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from datasets import Dataset
from torch.utils.data import Sampler

from hf_cpt.data.packing import GROUP_COLUMN, group_sizes, source_of


def normalize_ratios(ratios: Mapping[str, float], field: str = "ratios") -> dict[str, float]:
    """Shares that sum to 1; a negative share or an all-zero mixture is a configuration error."""
    for name, value in ratios.items():
        if value is None or not np.isfinite(value) or value < 0:
            raise ValueError(f"{field}.{name} is {value}; set every ratio to a number >= 0.")
    total = float(sum(ratios.values()))
    if total <= 0:
        raise ValueError(f"{field} are all zero; give at least one source a positive ratio.")
    return {name: value / total for name, value in ratios.items() if value > 0}


def flatten_mixture(mixture: Mapping, field: str = "mixture") -> dict[str, float]:
    """Source shares of a stage from either form the configs use.

    Flat: `{source: ratio}`. Nested by language, as the paper states it (Chinese : English = 2 : 8,
    then per-source shares inside each language):
    `{language: {"weight": 2, "sources": {source: share}}}`.
    """
    flat: dict[str, float] = {}
    for name, value in mixture.items():
        if isinstance(value, Mapping):
            if "weight" not in value or "sources" not in value:
                raise ValueError(f"{field}.{name} needs a 'weight' and a 'sources' mapping; add both.")
            weight = value["weight"]
            if weight is None or not np.isfinite(weight) or weight < 0:
                raise ValueError(f"{field}.{name}.weight is {weight}; set it to a number >= 0.")
            shares = normalize_ratios(value["sources"], f"{field}.{name}.sources")
            for source, share in shares.items():
                flat[source] = flat.get(source, 0.0) + weight * share
        else:
            flat[name] = value
    return normalize_ratios(flat, field)


def allocate_blocks(weights: Mapping[str, float], num_blocks: int) -> dict[str, int]:
    """Whole blocks per key, proportional to `weights`, each within one block of its exact share.

    Largest-remainder rounding; ties go to the key that sorts first, so the result is deterministic.
    """
    total = float(sum(weights.values()))
    exact = {key: num_blocks * weight / total for key, weight in weights.items()}
    counts = {key: int(np.floor(value)) for key, value in exact.items()}
    leftover = num_blocks - sum(counts.values())
    by_remainder = sorted(exact, key=lambda key: (-(exact[key] - counts[key]), key))
    for key in by_remainder[:leftover]:
        counts[key] += 1
    return counts


def allocate_group_blocks(
    source_ratios: Mapping[str, float], blocks_per_group: Mapping[str, int], num_blocks: int
) -> dict[str, int]:
    """Blocks per group: first per source (the stage's token ratios), then per topic inside a source.

    Inside a source, topics keep their natural share (proportional to the blocks the corpus has of
    each); the topic mixture of §3.2.1 changes those shares later, through the sampler.
    """
    per_source = allocate_blocks(source_ratios, num_blocks)
    counts: dict[str, int] = {}
    for source, source_blocks in per_source.items():
        groups = {group: size for group, size in blocks_per_group.items() if source_of(group) == source and size > 0}
        counts.update(allocate_blocks(groups, source_blocks))
    return counts


class StaticMixtureSampler(Sampler[int]):
    """Planned order of a stage: a fixed number of blocks per group, interleaved evenly.

    Within a group, blocks are drawn without replacement in a seeded random order; a group that needs
    more blocks than it has starts a new pass with a fresh permutation. Across groups, the k-th draw of
    a group with n draws is placed at time (k + u) / n, with u a seeded offset in [0, 1), and all draws
    are merged by time: every prefix of the order holds each group within about one block of its share.

    The order depends only on the inputs and the seed, so every rank builds the same global sequence
    (accelerate then shards it) and a resumed run replays it exactly.

    Args:
        groups: the group id of every dataset index.
        blocks_per_group: draws per group id.
        seed: seeds the in-group permutations and the interleave offsets.
        group_names: names of the group ids, for `target_ratios` (defaults to the ids as strings).
        target_ratios: the exact shares the counts were rounded from, by group name; defaults to the
            planned shares of blocks.
    """

    def __init__(
        self,
        groups: Sequence[int] | np.ndarray,
        blocks_per_group: Mapping[int, int],
        seed: int = 0,
        group_names: Sequence[str] | None = None,
        target_ratios: Mapping[str, float] | None = None,
    ) -> None:
        self.groups = np.asarray(groups, dtype=np.int64)
        self.blocks_per_group = {int(g): int(n) for g, n in blocks_per_group.items() if n > 0}
        self.seed = seed
        self.group_names = list(group_names) if group_names is not None else [str(g) for g in np.unique(groups)]
        for group in self.blocks_per_group:
            if not np.any(self.groups == group):
                raise ValueError(f"Group {self.group_names[group]!r} has draws planned but no blocks in the dataset.")
        self.order = self._plan()
        total = sum(self.blocks_per_group.values())
        self.target_ratios = (
            dict(target_ratios)
            if target_ratios is not None
            else {self.group_names[g]: n / total for g, n in sorted(self.blocks_per_group.items())}
        )

    def _plan(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        draws, times = [], []
        for group, count in sorted(self.blocks_per_group.items()):
            members = np.flatnonzero(self.groups == group)
            passes = -(-count // len(members))
            stream = np.concatenate([rng.permutation(members) for _ in range(passes)])[:count]
            draws.append(stream)
            times.append((np.arange(count) + rng.random()) / count)
        order = np.argsort(np.concatenate(times), kind="stable")
        return np.concatenate(draws)[order]

    def __iter__(self) -> Iterator[int]:
        return map(int, self.order)  # lazily: a list of every index would cost ~30 bytes each

    def __len__(self) -> int:
        return len(self.order)


def plan_stage(
    blocks: Dataset,
    source_ratios: Mapping[str, float],
    num_tokens: int,
    global_batch_size: int,
    seed: int = 0,
    stage: str = "stage",
) -> StaticMixtureSampler:
    """The sampler of one stage over packed blocks with a `group` column.

    The stage's tokens become whole blocks, rounded down to whole optimizer steps
    (`global_batch_size` blocks = per-device batch x processes x accumulation), so every rank gets
    full batches and every planned block is trained on exactly once.
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
    counts = allocate_group_blocks(ratios, sizes, steps * global_batch_size)
    source_sizes = {source: sum(n for g, n in sizes.items() if source_of(g) == source) for source in ratios}
    targets = {
        group: ratios[source_of(group)] * size / source_sizes[source_of(group)]
        for group, size in sizes.items()
        if source_of(group) in ratios and size > 0
    }
    return StaticMixtureSampler(
        group_ids,
        {names.index(group): n for group, n in counts.items()},
        seed=seed,
        group_names=names,
        target_ratios=targets,
    )

"""`TopicMixtureSampler`: one global order of dataset indices drawn by group weights that can change online.

- **Across groups**, `hf_cpt.mixture.interleave` decides which group each position draws from: first the
  source, then a topic of that source (group names `source/topic`), each within about one draw of its
  cumulative target at every prefix, with credits carried across weight changes.
- **Within a group**, documents are drawn without replacement: pass p of topic i follows a keyed permutation
  (a Feistel network with cycle walking, computed on the fly: nothing is shuffled in memory), or an order
  handed in (the curriculum). A topic that runs out starts its next pass.
- **Excluded documents** (those an earlier stage drew) come last: the first pass of a topic draws only the
  others; once they run out, later passes draw from all documents.

The state is the seed, the list of weight changes and the position; positions count draws from 0 across
epochs (epoch e covers positions [e * num_samples, (e + 1) * num_samples)). The order is the same on every
rank: accelerate's `BatchSamplerShard` gives each rank its own batches of it.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from hf_cpt.mixture.interleave import SegmentWeights, interleave
from hf_cpt.utils.hashing import splitmix64 as _mix64

logger = logging.getLogger(__name__)

STATE_FORMAT = 2
TOPIC_SEPARATOR = "/"  # `source/topic`: a group name without it is a source of its own
_CHUNK = 1 << 16  # positions generated per step of iteration
_SNAPSHOT_EVERY = 1 << 12  # interleave states kept every this many positions, for random access
_BUILD_CHUNK = 1 << 22  # documents grouped per step when building the per-topic arrays
_PASS_STREAM = 1  # tags the hashes that key the per-pass permutations
_FEISTEL_ROUNDS = 3  # pairs of half-rounds


def _hash(*parts: int | np.ndarray) -> np.ndarray:
    """A 64-bit hash of integers (or equal-length integer arrays, element-wise)."""
    value = np.zeros(1, dtype=np.uint64)
    for part in parts:
        value = _mix64(value ^ (np.asarray(part, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)))
    return value


def _permute(
    ranks: np.ndarray, sizes: np.ndarray, high_bits: np.ndarray, low_bits: np.ndarray, keys: np.ndarray
) -> np.ndarray:
    """Each rank (< its size) mapped through the permutation of range(size) that its key selects.

    A Feistel network on the bits of size − 1, split into a high and a low part that take turns being
    XORed with a hash of the other, is a bijection of range(2**bits) for every key; applying it again to
    any result outside range(size) (cycle walking, under 2 tries on average) makes it a bijection of
    range(size).
    """
    low_mask = (np.uint64(1) << low_bits) - np.uint64(1)
    high_mask = (np.uint64(1) << high_bits) - np.uint64(1)
    values = ranks.astype(np.uint64)
    pending = np.arange(len(values))
    while len(pending):
        shift, key = low_bits[pending], keys[pending]
        high, low = values[pending] >> shift, values[pending] & low_mask[pending]
        for round_index in range(_FEISTEL_ROUNDS):
            high = high ^ (_mix64(low ^ key ^ np.uint64(2 * round_index)) & high_mask[pending])
            low = low ^ (_mix64(high ^ key ^ np.uint64(2 * round_index + 1)) & low_mask[pending])
        values[pending] = (high << shift) | low
        pending = pending[values[pending] >= sizes[pending]]
    return values.astype(np.int64)


def _feistel_halves(domain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """High and low bit counts of the Feistel network for permutations of range(domain)."""
    _, bits = np.frexp(np.maximum(domain - 1, 0).astype(np.float64))  # bits = (domain − 1).bit_length()
    bits = bits.astype(np.uint64)
    low = bits // np.uint64(2)
    return bits - low, low


def source_of(group: str) -> str:
    """The source of a group name: `web-en` for `web-en/Law and Policy`, the name itself without a separator."""
    return group.split(TOPIC_SEPARATOR, 1)[0]


class _InterleaveState:
    """Where the interleave stands before a position: credits per source and topic, draws per topic."""

    __slots__ = ("draws", "source_credit", "topic_credit")

    def __init__(self, source_credit: np.ndarray, topic_credit: np.ndarray, draws: np.ndarray) -> None:
        self.source_credit, self.topic_credit, self.draws = source_credit, topic_credit, draws

    def copy(self) -> _InterleaveState:
        return _InterleaveState(self.source_credit.copy(), self.topic_credit.copy(), self.draws.copy())


class TopicMixtureSampler(Sampler[int]):
    """Dataset indices drawn by group proportions, one global order, exactly resumable.

    Args:
        topics: the group id (an integer in [0, number of groups)) of every dataset index.
        weights: group -> proportion, keyed by id or, with `topic_names`, by name. Normalized; a group left out
            or given 0 is never drawn.
        seed: keys the permutation of every pass of every group.
        num_samples: draws per epoch (`len(sampler)`); default: the number of documents.
        topic_names: names of the group ids (e.g. a `ClassLabel`'s names). Names `source/topic` make the
            interleave hierarchical: each source keeps to its share, and each topic to its share within it.
        shuffle: draw each pass of a group in a seeded random order; False keeps dataset order (or the order
            given by `set_topic_order`).
        exclude: dataset indices (or a boolean mask over them) to draw last, e.g. `drawn_mask()` of an earlier
            stage's sampler: each group's first pass draws only the others.

    Example:
        >>> sampler = TopicMixtureSampler([0, 0, 1, 1, 1, 2], {0: 0.5, 1: 0.5}, seed=0, num_samples=8)
        >>> order = list(sampler)  # indices 0-4 only: group 2 has no weight
        >>> sampler.set_weights({0: 0.2, 1: 0.8})  # takes effect at the next undrawn position
    """

    def __init__(
        self,
        topics: Sequence[int] | np.ndarray,
        weights: Mapping[int | str, float],
        seed: int = 0,
        num_samples: int | None = None,
        topic_names: Sequence[str] | None = None,
        shuffle: bool = True,
        exclude: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        topics = np.asarray(topics)
        if topics.ndim != 1 or len(topics) == 0:
            raise ValueError("topics is empty or not one-dimensional; give one topic id per dataset index.")
        if not np.issubdtype(topics.dtype, np.integer):
            raise ValueError(
                f"topics has dtype {topics.dtype}; give integer topic ids (map labels to ids, e.g. with a ClassLabel)."
            )
        low, high = int(topics.min()), int(topics.max())
        self.num_topics = len(topic_names) if topic_names is not None else high + 1
        if low < 0 or high >= self.num_topics:
            raise ValueError(
                f"topics holds id {low if low < 0 else high}, outside [0, {self.num_topics}); "
                "give ids that index topic_names."
            )
        self.topic_names = list(topic_names) if topic_names is not None else [str(i) for i in range(self.num_topics)]
        if int(seed) < 0:
            raise ValueError(f"seed is {seed}; give a seed >= 0.")
        self.seed = int(seed)
        self.shuffle = shuffle
        self.num_samples = int(num_samples) if num_samples is not None else len(topics)
        if self.num_samples <= 0:
            raise ValueError(f"num_samples is {self.num_samples}; set it to the number of draws per epoch (> 0).")
        self.num_documents = len(topics)
        self._index_dtype = np.int32 if len(topics) < 2**31 else np.int64
        self._excluded = self._excluded_indices(exclude)
        self.topic_sizes, self._members, self._fresh = self._group_by_topic(topics)
        self._offsets = np.concatenate([[0], np.cumsum(self.topic_sizes)])
        self.source_names = list(dict.fromkeys(source_of(name) for name in self.topic_names))
        self._source_of_topic = np.array([self.source_names.index(source_of(n)) for n in self.topic_names])
        self._topics_by_source = np.argsort(self._source_of_topic, kind="stable").astype(np.int64)
        self._topic_starts = np.concatenate(
            [[0], np.cumsum(np.bincount(self._source_of_topic, minlength=len(self.source_names)))]
        ).astype(np.int64)
        self._permuted = np.full(self.num_topics, shuffle)  # topics drawn through a keyed permutation
        self._custom_order: dict[int, str] = {}  # topic -> fingerprint of the orders handed in
        # topic -> later orders [(first draw, order)]: draws from that draw number on follow that order.
        self._later_orders: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._first_pass: dict[int, list[np.ndarray]] = {}  # per custom order of a topic: its unexcluded part
        self._history: list[tuple[int, np.ndarray]] = [(0, self._weight_vector(weights, "weights"))]
        self._segments: list[SegmentWeights] = []
        self._reset_snapshots()
        self._epoch = 0
        self._position = 0
        self._version = 0  # bumped by every change of the schedule, so a live iterator regenerates

    # ---- construction ----
    def _excluded_indices(self, exclude: Sequence[int] | np.ndarray | None) -> np.ndarray:
        """The excluded dataset indices, sorted and unique, from indices or a boolean mask."""
        if exclude is None:
            return np.zeros(0, dtype=self._index_dtype)
        exclude = np.asarray(exclude)
        if exclude.dtype == bool:
            if len(exclude) != self.num_documents:
                raise ValueError(
                    f"exclude is a mask of {len(exclude)} values for {self.num_documents} dataset indices; "
                    "give one value per row of the dataset the sampler draws from."
                )
            return np.flatnonzero(exclude).astype(self._index_dtype)
        if len(exclude) and (not np.issubdtype(exclude.dtype, np.integer) or exclude.min() < 0 or
                             exclude.max() >= self.num_documents):  # fmt: skip
            raise ValueError(
                f"exclude holds values outside [0, {self.num_documents}); give dataset indices of this dataset."
            )
        return np.unique(exclude).astype(self._index_dtype)

    def _group_by_topic(self, topics: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dataset indices grouped by topic, each topic's unexcluded ones first (ascending), and the counts.

        Chunked counting sort on (topic, excluded): a stable radix argsort of each chunk, copied into every
        slot, so the only full-size array is the result itself.
        """
        keys = 2 * self.num_topics
        narrow = np.uint8 if keys <= 256 else np.uint16 if keys <= 65536 else np.int64
        slots = topics.astype(narrow) * narrow(2)
        if len(self._excluded):
            slots[self._excluded] += narrow(1)
        slot_sizes = np.bincount(slots, minlength=keys).astype(np.int64)
        members = np.empty(len(slots), dtype=self._index_dtype)
        cursor = np.concatenate([[0], np.cumsum(slot_sizes)[:-1]])
        for base in range(0, len(slots), _BUILD_CHUNK):
            chunk = slots[base : base + _BUILD_CHUNK]
            order = (np.argsort(chunk, kind="stable") + base).astype(self._index_dtype)
            counts = np.bincount(chunk, minlength=keys)
            starts = np.cumsum(counts) - counts
            for slot in np.flatnonzero(counts):
                count = counts[slot]
                members[cursor[slot] : cursor[slot] + count] = order[starts[slot] : starts[slot] + count]
            cursor += counts
        fresh, excluded = slot_sizes[0::2], slot_sizes[1::2]
        return fresh + excluded, members, fresh

    def _topic_id(self, key: int | str, field: str) -> int:
        if isinstance(key, str) and key in self.topic_names:
            return self.topic_names.index(key)
        if isinstance(key, (int, np.integer)) and 0 <= key < self.num_topics:
            return int(key)
        raise ValueError(
            f"{field} names topic {key!r}, which is not a topic of this sampler ({self.num_topics} topics: "
            f"ids 0-{self.num_topics - 1} or names {self.topic_names[:5]}{'...' if self.num_topics > 5 else ''})."
        )

    def _weight_vector(self, weights: Mapping[int | str, float], field: str) -> np.ndarray:
        vector = np.zeros(self.num_topics, dtype=np.float64)
        for key, value in weights.items():
            topic = self._topic_id(key, field)
            if value is None or not np.isfinite(value) or value < 0:
                raise ValueError(f"{field}[{key!r}] is {value}; set every weight to a finite number >= 0.")
            vector[topic] = float(value)
        if vector.sum() <= 0:
            raise ValueError(f"{field} are all zero; give at least one topic a positive weight.")
        empty = np.flatnonzero((vector > 0) & (self.topic_sizes == 0))
        if len(empty):
            name = self.topic_names[empty[0]]
            raise ValueError(f"{field}[{name!r}] is positive but topic {name!r} has no documents; set its weight to 0.")
        return vector / vector.sum()

    # ---- the schedule ----
    @property
    def weights(self) -> dict[str, float]:
        """The latest weights by topic name (topics with weight 0 left out)."""
        return {self.topic_names[i]: float(w) for i, w in enumerate(self._history[-1][1]) if w > 0}

    @property
    def target_ratios(self) -> dict[str, float]:
        """The latest weights, under the name `CPTTrainer`'s data recipe reads."""
        return self.weights

    @property
    def history(self) -> list[tuple[int, dict[str, float]]]:
        """Every weight change as (position from which it applies, weights by topic name)."""
        return [
            (position, {self.topic_names[i]: float(w) for i, w in enumerate(vector) if w > 0})
            for position, vector in self._history
        ]

    @property
    def nbytes(self) -> int:
        """Memory held by the sampler's arrays: 4 bytes per document plus a few per topic and snapshot."""
        arrays = (self._members, self.topic_sizes, self._fresh, self._offsets, self._permuted, self._excluded)
        later = sum(order.nbytes for orders in self._later_orders.values() for _, order in orders)
        first = sum(order.nbytes for orders in self._first_pass.values() for order in orders)
        snapshots = sum(
            state.source_credit.nbytes + state.topic_credit.nbytes + state.draws.nbytes
            for state in self._snapshots.values()
        )
        return sum(array.nbytes for array in arrays) + later + first + snapshots

    @property
    def position(self) -> int:
        """The next position of the order to be drawn."""
        return self._position

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def excluded(self) -> np.ndarray:
        """The excluded (drawn-last) dataset indices, ascending."""
        return self._excluded.astype(np.int64)

    def fresh_documents(self) -> dict[str, int]:
        """Per topic, the documents its first pass draws (all of them unless some were excluded)."""
        return {name: int(count) for name, count in zip(self.topic_names, self._fresh, strict=True)}

    def set_weights(self, weights: Mapping[int | str, float], position: int | None = None) -> None:
        """Draw by `weights` from `position` on (default: the next undrawn position).

        Every group keeps its credit (what it is owed against its cumulative target), so the change takes
        over smoothly, and setting the weights already in force changes nothing. Under several processes every
        rank must pass the same `position`, at or after every rank's own next undrawn position (their
        DataLoaders draw ahead by different amounts); `TopicPerplexityCallback` does this for you.
        """
        vector = self._weight_vector(weights, "weights")
        position = self._position if position is None else int(position)
        if position < self._position:
            raise ValueError(
                f"position {position} is already drawn (the sampler is at {self._position}); "
                "give a position at or after it."
            )
        last = self._history[-1][0]
        if position < last:
            raise ValueError(f"position {position} is before the last weight change at {last}; changes go forward.")
        if position == last:
            self._history[-1] = (position, vector)
        else:
            self._history.append((position, vector))
        del self._segments[len(self._history) - 1 :]
        self._drop_snapshots_after(position)

    def set_topic_order(self, topic: int | str, order: Sequence[int] | np.ndarray, from_draw: int = 0) -> None:
        """Draw `topic`'s documents in this order (every pass), instead of its seeded permutations.

        `order` must hold each dataset index of the topic exactly once. This is how a curriculum (easy to
        hard within a topic) plugs into the mixture. Excluded documents are skipped in the first pass.

        With `from_draw` > 0 the order applies from the topic's `from_draw`-th draw on (counted across
        passes) and the draws before keep the orders they had, so a replay from position 0 stays exact.
        The topic needs an order of its own already; later orders given for a draw at or after
        `from_draw` are dropped. Each such order keeps a copy of the topic's indices in memory.
        """
        topic = self._topic_id(topic, "set_topic_order")
        order = np.asarray(order)
        start, end = self._offsets[topic], self._offsets[topic + 1]
        members = self._members[start:end]
        if len(order) != len(members) or not np.array_equal(np.sort(order), np.sort(members)):
            raise ValueError(
                f"The order for topic {self.topic_names[topic]!r} does not hold each of its {len(members)} "
                "documents exactly once; give a permutation of the topic's dataset indices."
            )
        if from_draw < 0:
            raise ValueError(f"from_draw is {from_draw}; give a draw number >= 0.")
        order = order.astype(self._index_dtype)
        if from_draw == 0:
            members[:] = order
            self._permuted[topic] = False
            self._later_orders.pop(topic, None)
            self._first_pass[topic] = [self._unexcluded(order)]
        else:
            if topic not in self._custom_order:
                raise ValueError(
                    f"Topic {self.topic_names[topic]!r} has no order of its own to continue from; "
                    "install one with from_draw=0 first."
                )
            kept = [(draw, other) for draw, other in self._later_orders.get(topic, []) if draw < from_draw]
            self._later_orders[topic] = [*kept, (int(from_draw), order)]
            self._first_pass[topic] = self._first_pass[topic][: len(kept) + 1] + [self._unexcluded(order)]
        self._custom_order[topic] = self._orders_digest(topic)
        self._version += 1

    def _unexcluded(self, order: np.ndarray) -> np.ndarray:
        """An order without the excluded documents (the order itself when none are excluded)."""
        if not len(self._excluded):
            return order
        return order[~np.isin(order, self._excluded, assume_unique=True)]

    def _orders_digest(self, topic: int) -> str:
        """Fingerprint of every order a topic follows: its first order, then each later one and its first draw."""
        start, end = self._offsets[topic], self._offsets[topic + 1]
        digest = hashlib.blake2b(self._members[start:end].tobytes(), digest_size=8)
        for draw, order in self._later_orders.get(topic, []):
            digest.update(np.int64(draw).tobytes())
            digest.update(order.tobytes())
        return digest.hexdigest()

    def topic_draws(self, topic: int | str, start: int, stop: int) -> np.ndarray:
        """Dataset indices of `topic`'s draws [start, stop), counted across passes (draw k = its k-th block)."""
        topic = self._topic_id(topic, "topic_draws")
        draws = np.arange(start, max(start, stop), dtype=np.int64)
        return self._dataset_indices(np.full(len(draws), topic, dtype=np.int64), draws).astype(np.int64)

    def topic_pass(self, topic: int | str, draw: int) -> tuple[int, int]:
        """The draw numbers [start, stop) of the pass of `topic` that its `draw`-th draw belongs to.

        The first pass holds the topic's unexcluded documents; every later pass all of them.
        """
        topic = self._topic_id(topic, "topic_pass")
        fresh, size = int(self._fresh[topic]), int(self.topic_sizes[topic])
        if draw < fresh:
            return 0, fresh
        start = fresh + (draw - fresh) // size * size
        return start, start + size

    def topic_members(self, topic: int | str) -> np.ndarray:
        """The dataset indices of a topic's documents, ascending."""
        topic = self._topic_id(topic, "topic_members")
        return np.sort(self._members[self._offsets[topic] : self._offsets[topic + 1]]).astype(np.int64)

    # ---- the interleave ----
    def _reset_snapshots(self) -> None:
        sources = len(self.source_names)
        zeros = _InterleaveState(
            np.zeros(sources, dtype=np.int64),
            np.zeros(self.num_topics, dtype=np.int64),
            np.zeros(self.num_topics, dtype=np.int64),
        )
        self._snapshots: dict[int, _InterleaveState] = {0: zeros}
        self._snapshot_positions = [0]

    def _drop_snapshots_after(self, position: int) -> None:
        keep = bisect.bisect_right(self._snapshot_positions, position)
        for dropped in self._snapshot_positions[keep:]:
            del self._snapshots[dropped]
        del self._snapshot_positions[keep:]
        self._version += 1

    def _segment(self, index: int) -> SegmentWeights:
        while len(self._segments) <= index:
            vector = self._history[len(self._segments)][1]
            self._segments.append(SegmentWeights(vector, self._source_of_topic, len(self.source_names)))
        return self._segments[index]

    def _run(self, start: int, stop: int, record: bool) -> tuple[_InterleaveState, np.ndarray, np.ndarray]:
        """The interleave state at `stop`, and (with `record`) the topic and draw number of positions [start, stop).

        Starts from the latest snapshot at or before `start` and keeps a snapshot every `_SNAPSHOT_EVERY`
        positions on the way, so random access costs at most that many steps beyond the range itself.
        """
        first = self._snapshot_positions[bisect.bisect_right(self._snapshot_positions, start) - 1]
        state = self._snapshots[first].copy()
        count = stop - start if record else 0
        topics, draws = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
        scratch_topics, scratch_draws = (
            np.empty(_SNAPSHOT_EVERY, dtype=np.int64),
            np.empty(_SNAPSHOT_EVERY, dtype=np.int64),
        )
        changes = [position for position, _ in self._history]
        position = first
        while position < stop:
            index = bisect.bisect_right(changes, position) - 1
            segment = self._segment(index)
            end = min(stop, (position // _SNAPSHOT_EVERY + 1) * _SNAPSHOT_EVERY)
            if index + 1 < len(changes):
                end = min(end, changes[index + 1])
            if record and position < start:
                end = min(end, start)
            if record and position >= start:
                out_topic, out_draw = topics[position - start : end - start], draws[position - start : end - start]
            else:
                out_topic, out_draw = scratch_topics[: end - position], scratch_draws[: end - position]
            interleave(
                end - position,
                segment.source,
                segment.source_threshold,
                segment.topic,
                segment.topic_threshold,
                self._topic_starts,
                self._topics_by_source,
                state.source_credit,
                state.topic_credit,
                state.draws,
                out_topic,
                out_draw,
            )
            position = end
            if position % _SNAPSHOT_EVERY == 0 and position not in self._snapshots:
                self._snapshots[position] = state.copy()
                bisect.insort(self._snapshot_positions, position)
        return state, topics, draws

    def _draws_before(self, position: int) -> np.ndarray:
        return self._run(position, position, record=False)[0].draws

    def draws_per_topic(self, position: int | None = None) -> dict[str, int]:
        """Draws of each topic before `position` (default: the next undrawn one), by topic name."""
        counts = self._draws_before(self._position if position is None else position)
        return {self.topic_names[i]: int(c) for i, c in enumerate(counts) if c > 0}

    def draws_per_source(self, position: int | None = None) -> dict[str, int]:
        """Draws of each source (all its topics) before `position` (default: the next undrawn one)."""
        counts = self._draws_before(self._position if position is None else position)
        totals = np.bincount(self._source_of_topic, weights=counts, minlength=len(self.source_names))
        return {name: int(total) for name, total in zip(self.source_names, totals, strict=True) if total > 0}

    def passes(self, position: int | None = None) -> dict[str, float]:
        """Passes over each drawn topic before `position`: 1.0 = as many draws as the topic has documents."""
        counts = self._draws_before(self._position if position is None else position)
        return {self.topic_names[i]: c / self.topic_sizes[i] for i, c in enumerate(counts) if c > 0}

    def cumulative_targets(self, position: int | None = None) -> dict[str, float]:
        """Per topic, its target number of draws before `position`: the sum over segments of weight x length."""
        position = self._position if position is None else position
        targets = np.zeros(self.num_topics)
        changes = [*self._history, (max(position, self._history[-1][0]), None)]
        for (start, vector), (end, _) in zip(changes, changes[1:], strict=False):
            targets += vector * max(0, min(end, position) - start)
        return {name: float(target) for name, target in zip(self.topic_names, targets, strict=True)}

    def repeated_draws(self, position: int | None = None) -> dict[str, int]:
        """Per topic, draws before `position` of documents drawn before (here or by the excluding stage)."""
        counts = self._draws_before(self._position if position is None else position)
        return {name: int(max(0, c - f)) for name, c, f in zip(self.topic_names, counts, self._fresh, strict=True)}

    def drawn_mask(self, position: int | None = None) -> np.ndarray:
        """A boolean mask over the dataset: the documents drawn before `position`, or excluded.

        Give it as `exclude=` to the sampler of the next stage, so that stage draws unseen documents first.
        """
        counts = self._draws_before(self._position if position is None else position)
        mask = np.zeros(self.num_documents, dtype=bool)
        mask[self._excluded] = True
        for topic in np.flatnonzero(counts):
            drawn = min(int(counts[topic]), int(self._fresh[topic]) + int(self.topic_sizes[topic]))
            mask[self.topic_draws(topic, 0, drawn)] = True
        return mask

    # ---- drawing ----
    def _dataset_indices(self, topics: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Dataset index of the `draws[j]`-th draw of topic `topics[j]`, for every j, across passes."""
        sizes, fresh = self.topic_sizes[topics], self._fresh[topics]
        first = draws < fresh
        later = np.maximum(draws - fresh, 0)
        passes = np.where(first, 0, 1 + later // np.maximum(sizes, 1))
        ranks = np.where(first, draws, later % np.maximum(sizes, 1))
        domain = np.where(first, fresh, sizes)
        permuted = self._permuted[topics]
        if permuted.any():
            keys = _hash(self.seed, _PASS_STREAM, topics[permuted], passes[permuted])
            high, low = _feistel_halves(domain[permuted])
            ranks[permuted] = _permute(ranks[permuted], domain[permuted], high, low, keys)
        # First passes of permuted topics read the unexcluded documents, stored first in their slot.
        indices = self._members[self._offsets[topics] + ranks]
        for topic in self._custom_order:
            chosen = np.flatnonzero(topics == topic)
            if not len(chosen):
                continue
            later_orders = self._later_orders.get(topic, [])
            orders = [self._members[self._offsets[topic] : self._offsets[topic + 1]]]
            orders += [order for _, order in later_orders]
            # 0 = the topic's first order, k = the k-th later order: the last one starting at or before the draw.
            which = np.searchsorted([draw for draw, _ in later_orders], draws[chosen], side="right")
            in_first = first[chosen]
            for k in np.unique(which):
                rows = chosen[(which == k) & ~in_first]
                indices[rows] = orders[k][ranks[rows]]
                rows = chosen[(which == k) & in_first]
                indices[rows] = self._first_pass[topic][k][ranks[rows]]
        return indices

    def indices(self, start: int, stop: int) -> np.ndarray:
        """Dataset indices at positions [start, stop) of the order, as an array; the position is unchanged."""
        if stop <= start:
            return np.empty(0, dtype=np.int64)
        _, topics, draws = self._run(start, stop, record=True)
        return self._dataset_indices(topics, draws).astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        end = (self._epoch + 1) * self.num_samples
        if self._position >= end:  # this epoch was drawn already: draw it again (call set_epoch to move on)
            self._position = self._epoch * self.num_samples
        while self._position < end:
            version = self._version
            for index in self.indices(self._position, min(end, self._position + _CHUNK)).tolist():
                if self._version != version:
                    break  # the schedule changed under us: regenerate from the next undrawn position
                self._position += 1
                yield index

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of `epoch` (no-op when already in it, so a restored position survives)."""
        if epoch != self._epoch:
            self._epoch = int(epoch)
            self._position = self._epoch * self.num_samples

    def seek(self, position: int) -> None:
        """Make `position` the next one drawn (the epoch follows from it)."""
        if position < 0:
            raise ValueError(f"position is {position}; give a position >= 0.")
        self._position = int(position)
        self._epoch = self._position // self.num_samples
        self._version += 1

    # ---- checkpointing ----
    def _excluded_digest(self) -> str:
        return hashlib.blake2b(self._excluded.astype(np.int64).tobytes(), digest_size=8).hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """Everything that fixes the order and where it stands: seed, weight changes, epoch and position.

        Its size grows with topics and weight changes, never with documents. JSON-safe.
        """
        return {
            "format": STATE_FORMAT,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_samples": self.num_samples,
            "epoch": self._epoch,
            "position": self._position,
            "topic_names": self.topic_names,
            "topic_sizes": self.topic_sizes.tolist(),
            "excluded": {"documents": len(self._excluded), "digest": self._excluded_digest()},
            "custom_orders": {self.topic_names[t]: digest for t, digest in sorted(self._custom_order.items())},
            "history": [{"position": p, "weights": w.tolist()} for p, w in self._history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()`; iteration then continues at its position with the very same indices."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"Sampler state has format {state.get('format')!r}; this version reads {STATE_FORMAT} "
                "(a checkpoint written by an older hf-cpt: resume with that version or start the stage afresh)."
            )
        if list(state["topic_sizes"]) != self.topic_sizes.tolist():
            raise ValueError(
                "The saved sampler state was made for other topic sizes than this dataset's; "
                "resume on the same training data (same topics, same documents)."
            )
        if state["excluded"] != {"documents": len(self._excluded), "digest": self._excluded_digest()}:
            raise ValueError(
                f"The saved sampler state excluded {state['excluded']['documents']} documents drawn by earlier "
                f"stages, this sampler {len(self._excluded)} (or others); build it with the same exclude= "
                "(the earlier stages' drawn blocks)."
            )
        saved_orders = dict(state["custom_orders"])
        ours = {self.topic_names[t]: digest for t, digest in self._custom_order.items()}
        if saved_orders != ours:
            raise ValueError(
                "The saved sampler state used other per-topic orders than this sampler; "
                "install the same orders (set_topic_order) before loading it."
            )
        self.seed = int(state["seed"])
        self.shuffle = bool(state["shuffle"])
        self._permuted[:] = self.shuffle
        self._permuted[list(self._custom_order)] = False
        self.num_samples = int(state["num_samples"])
        self._history = [
            (int(entry["position"]), np.asarray(entry["weights"], dtype=np.float64)) for entry in state["history"]
        ]
        self._segments = []
        self._reset_snapshots()
        self._version += 1
        self._epoch = int(state["epoch"])
        self._position = int(state["position"])

    # ---- construction from a dataset ----
    @classmethod
    def from_dataset(
        cls, dataset: Any, weights: Mapping[int | str, float], column: str = "group", **kwargs: Any
    ) -> TopicMixtureSampler:
        """A sampler over a `datasets.Dataset` whose `column` holds topic ids (names from its `ClassLabel`)."""
        if column not in dataset.column_names:
            raise ValueError(
                f"Column {column!r} is not in the dataset (columns: {dataset.column_names}); name the topic column."
            )
        names = getattr(dataset.features[column], "names", None)
        # One Arrow read: datasets' lazy column would convert the rows one by one.
        topics = dataset.with_format("arrow", columns=[column])[:][column].to_numpy()
        return cls(topics, weights, topic_names=kwargs.pop("topic_names", names), **kwargs)

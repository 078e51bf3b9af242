"""`TopicMixtureSampler`: one global order of dataset indices drawn by topic weights that can change online.

How the order is made, and why each choice:

- **Within a topic**, documents are drawn without replacement: pass p of topic i follows a
  pseudo-random permutation keyed by (seed, i, p), or an order handed in (the curriculum). A topic that
  runs out starts its next pass. The permutation is a keyed Feistel network with cycle walking,
  computed on the fly for the draws asked for: no shuffled copy is ever materialised, so the first draw
  of a 100M-document topic costs what any other draw costs, and the order depends on our own integer
  arithmetic only (not on a library's shuffle). The documents of all topics live in one array grouped
  by topic: 4 bytes per document (8 above 2**31 documents) is all the sampler holds per document.
- **Across topics**, draws are interleaved by stride scheduling: the k-th draw of topic i gets the
  time (k + 1/2) / w_i, and draws are merged by (time, topic).
  Every topic then keeps within a few draws of its share in every window of the order (a
  low-discrepancy interleave, not independent coin flips), and the number of draws of each topic
  after any q positions can be computed directly, without replaying the q positions.
- **Weight changes** (`set_weights`) start a new segment of the interleave at a given position of
  the order; topics continue their passes where they were. The schedule is the seed plus the list of
  (position, weights), so `state_dict()` stays a few hundred bytes whatever the number of documents,
  and `load_state_dict()` restores the very same order from any position.

Positions count draws of the order from 0. An epoch is `num_samples` consecutive positions; epoch e
covers positions [e * num_samples, (e + 1) * num_samples). The order is the same on every rank (no
rank splitting here: accelerate's `BatchSamplerShard` gives each rank its own batches of it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

STATE_FORMAT = 1
_CHUNK = 1 << 16  # draws generated per vectorised step of the interleave
_BUILD_CHUNK = 1 << 22  # documents grouped per step when building the per-topic arrays
_PASS_STREAM = 1  # tags the hashes that key the per-pass permutations
_PHASE = 0.5  # offset of the first draw of each topic in the interleave, in strides
_FEISTEL_ROUNDS = 3  # pairs of half-rounds


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective avalanche of 64-bit integers (arrays wrap modulo 2**64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


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


def _stride_times(draw: np.ndarray, stride: np.ndarray) -> np.ndarray:
    """Time of the `draw`-th draw of a topic: (draw + 1/2) * stride. The one formula every caller uses,
    so that counting and generating compare bit-identical floats."""
    return (draw.astype(np.float64) + _PHASE) * stride


def _first_by_time(times: np.ndarray, topics: np.ndarray) -> int:
    """Position of the earliest (time, topic) pair."""
    return int(np.lexsort((topics, times))[0])


def _last_by_time(times: np.ndarray, topics: np.ndarray) -> int:
    return int(np.lexsort((topics, times))[-1])


class _Segment:
    """The interleave between two weight changes: the active topics and their strides (1 / weight)."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = weights
        self.active = np.flatnonzero(weights > 0)
        self.stride = 1.0 / weights[self.active]

    def counts_at(self, q: int) -> np.ndarray:
        """Draws of each active topic among the first q draws of this segment, exactly."""
        if q == 0:
            return np.zeros(len(self.active), dtype=np.int64)
        # Start from every draw earlier than time q (within about K/2 of q draws), then add or remove
        # single draws in (time, topic) order until there are exactly q.
        threshold = float(q)
        counts = np.maximum(0, np.ceil(threshold / self.stride - _PHASE)).astype(np.int64)
        while True:  # make counts exactly #{k : time(k) < threshold} despite rounding
            too_many = (counts > 0) & (_stride_times(counts - 1, self.stride) >= threshold)
            too_few = _stride_times(counts, self.stride) < threshold
            if not too_many.any() and not too_few.any():
                break
            counts = counts - too_many + too_few
        while counts.sum() < q:
            counts[_first_by_time(_stride_times(counts, self.stride), self.active)] += 1
        while counts.sum() > q:
            drawn = np.flatnonzero(counts > 0)
            last = _stride_times(counts[drawn] - 1, self.stride[drawn])
            counts[drawn[_last_by_time(last, self.active[drawn])]] -= 1
        return counts

    def next_topics(self, counts: np.ndarray, n: int) -> np.ndarray:
        """Topic ids of the next n draws after `counts` draws per active topic."""
        # Topic i takes fewer than (n + K) * w_i + 1 of the next n draws; candidates beyond that margin
        # cannot be among them. The check below makes that a guarantee rather than an assumption.
        margin = np.ceil((n + 2 * len(self.active)) * self.weights[self.active]).astype(np.int64) + 2
        while True:
            draws = np.concatenate([np.arange(c, c + m) for c, m in zip(counts, margin, strict=True)])
            owner = np.repeat(np.arange(len(self.active)), margin)
            times = _stride_times(draws, self.stride[owner])
            # Candidates are laid out by topic, so a stable sort on time breaks ties by topic.
            chosen = owner[np.argsort(times, kind="stable")[:n]]
            if np.all(np.bincount(chosen, minlength=len(self.active)) < margin):
                return chosen
            margin *= 2


class TopicMixtureSampler(Sampler[int]):
    """Dataset indices drawn by topic proportions, one global order, exactly resumable.

    Args:
        topics: the topic id (an integer in [0, number of topics)) of every dataset index.
        weights: topic -> proportion, keyed by topic id or, with `topic_names`, by name. Normalised; a
            topic left out or given 0 is never drawn.
        seed: keys the permutation of every pass of every topic.
        num_samples: draws per epoch (`len(sampler)`); default: the number of documents.
        topic_names: names of the topic ids (e.g. a `ClassLabel`'s names), for weights by name and logs.
        shuffle: draw each pass of a topic in a seeded random order; False keeps dataset order (or the
            order given by `set_topic_order`).

    Example:
        >>> sampler = TopicMixtureSampler([0, 0, 1, 1, 1, 2], {0: 0.5, 1: 0.5}, seed=0, num_samples=8)
        >>> order = list(sampler)  # indices 0-4 only: topic 2 has no weight
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
        self.topic_sizes, self._members = self._group_by_topic(topics)
        self._offsets = np.concatenate([[0], np.cumsum(self.topic_sizes)])
        # Feistel halves of each topic's permutation domain: the bits of size − 1, split in two.
        bits = np.array([int(size - 1).bit_length() if size > 0 else 0 for size in self.topic_sizes], dtype=np.uint64)
        self._low_bits = bits // np.uint64(2)
        self._high_bits = bits - self._low_bits
        self._permuted = np.full(self.num_topics, shuffle)  # topics drawn through a keyed permutation
        self._custom_order: dict[int, str] = {}  # topic -> fingerprint of the orders handed in
        # topic -> later orders [(first draw, order)]: draws from that draw number on follow that order.
        self._later_orders: dict[int, list[tuple[int, np.ndarray]]] = {}
        self._history: list[tuple[int, np.ndarray]] = [(0, self._weight_vector(weights, "weights"))]
        self._segments: list[_Segment] = []
        self._segment_starts: list[np.ndarray] = []  # draws per topic before each segment
        self._epoch = 0
        self._position = 0
        self._version = 0  # bumped by every change of the schedule, so a live iterator regenerates

    # ---- construction ----
    def _group_by_topic(self, topics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dataset indices grouped by topic (ascending within a topic) and the topic sizes.

        Chunked counting sort: a stable radix argsort of each chunk, copied into every topic's slot, so
        the only full-size array is the result itself.
        """
        narrow = np.uint8 if self.num_topics <= 256 else np.uint16 if self.num_topics <= 65536 else np.int64
        small = topics.astype(narrow)  # radix sort on one or two bytes
        sizes = np.bincount(small, minlength=self.num_topics).astype(np.int64)
        members = np.empty(len(small), dtype=self._index_dtype)
        cursor = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        for base in range(0, len(small), _BUILD_CHUNK):
            chunk = small[base : base + _BUILD_CHUNK]
            order = (np.argsort(chunk, kind="stable") + base).astype(self._index_dtype)
            counts = np.bincount(chunk, minlength=self.num_topics)
            starts = np.cumsum(counts) - counts
            for topic in np.flatnonzero(counts):
                count = counts[topic]
                members[cursor[topic] : cursor[topic] + count] = order[starts[topic] : starts[topic] + count]
            cursor += counts
        return sizes, members

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
        """Memory held by the sampler's arrays: 4 bytes per document plus a few per topic."""
        arrays = (self._members, self.topic_sizes, self._offsets, self._low_bits, self._high_bits, self._permuted)
        later = sum(order.nbytes for orders in self._later_orders.values() for _, order in orders)
        return sum(array.nbytes for array in arrays) + later

    @property
    def position(self) -> int:
        """The next position of the order to be drawn."""
        return self._position

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_weights(self, weights: Mapping[int | str, float], position: int | None = None) -> None:
        """Draw by `weights` from `position` on (default: the next undrawn position).

        Under several processes every rank must pass the same `position`, at or after every rank's own
        next undrawn position (their DataLoaders draw ahead by different amounts); `TopicPerplexityCallback`
        does this for you.
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
        self._drop_segments_from(len(self._history) - 1)

    def set_topic_order(self, topic: int | str, order: Sequence[int] | np.ndarray, from_draw: int = 0) -> None:
        """Draw `topic`'s documents in this order (every pass), instead of its seeded permutations.

        `order` must hold each dataset index of the topic exactly once. This is how a curriculum (easy to
        hard within a topic) plugs into the mixture.

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
        if from_draw == 0:
            members[:] = order
            self._permuted[topic] = False
            self._later_orders.pop(topic, None)
            self._custom_order[topic] = hashlib.blake2b(members.tobytes(), digest_size=8).hexdigest()
        else:
            if topic not in self._custom_order:
                raise ValueError(
                    f"Topic {self.topic_names[topic]!r} has no order of its own to continue from; "
                    "install one with from_draw=0 first."
                )
            later = [(draw, kept) for draw, kept in self._later_orders.get(topic, []) if draw < from_draw]
            self._later_orders[topic] = [*later, (int(from_draw), order.astype(self._index_dtype))]
            self._custom_order[topic] = self._orders_digest(topic)
        self._version += 1

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

    def topic_members(self, topic: int | str) -> np.ndarray:
        """The dataset indices of a topic's documents, ascending."""
        topic = self._topic_id(topic, "topic_members")
        return np.sort(self._members[self._offsets[topic] : self._offsets[topic + 1]]).astype(np.int64)

    def _drop_segments_from(self, index: int) -> None:
        del self._segments[index:]
        del self._segment_starts[index:]
        self._version += 1

    def _segment(self, index: int) -> _Segment:
        while len(self._segments) <= index:
            j = len(self._segments)
            self._segments.append(_Segment(self._history[j][1]))
            if j == 0:
                start = np.zeros(self.num_topics, dtype=np.int64)
            else:
                previous = self._segments[j - 1]
                start = self._segment_starts[j - 1].copy()
                start[previous.active] += previous.counts_at(self._history[j][0] - self._history[j - 1][0])
            self._segment_starts.append(start)
        return self._segments[index]

    def _segment_index(self, position: int) -> int:
        return int(np.searchsorted([p for p, _ in self._history], position, side="right")) - 1

    def draws_per_topic(self, position: int | None = None) -> dict[str, int]:
        """Draws of each topic before `position` (default: the next undrawn one), by topic name."""
        position = self._position if position is None else position
        counts = self._draws_before(position)
        return {self.topic_names[i]: int(c) for i, c in enumerate(counts) if c > 0}

    def passes(self, position: int | None = None) -> dict[str, float]:
        """Passes over each drawn topic before `position`: 1.0 = every document of the topic drawn once."""
        position = self._position if position is None else position
        counts = self._draws_before(position)
        return {self.topic_names[i]: c / self.topic_sizes[i] for i, c in enumerate(counts) if c > 0}

    def _draws_before(self, position: int) -> np.ndarray:
        index = self._segment_index(position)
        segment = self._segment(index)
        counts = self._segment_starts[index].copy()
        counts[segment.active] += segment.counts_at(position - self._history[index][0])
        return counts

    # ---- drawing ----
    def _dataset_indices(self, topics: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Dataset index of the `draws[j]`-th draw of topic `topics[j]`, for every j, across passes."""
        sizes = self.topic_sizes[topics]
        passes, ranks = np.divmod(draws, sizes)
        permuted = self._permuted[topics]
        if permuted.any():
            keys = _hash(self.seed, _PASS_STREAM, topics[permuted], passes[permuted])
            chosen = topics[permuted]
            ranks[permuted] = _permute(
                ranks[permuted], sizes[permuted], self._high_bits[chosen], self._low_bits[chosen], keys
            )
        indices = self._members[self._offsets[topics] + ranks]
        for topic, later in self._later_orders.items():
            chosen = np.flatnonzero(topics == topic)
            # 0 = the topic's first order, k = the k-th later order: the last one starting at or before the draw.
            which = np.searchsorted([draw for draw, _ in later], draws[chosen], side="right")
            for k in np.unique(which[which > 0]):
                rows = chosen[which == k]
                indices[rows] = later[k - 1][1][ranks[rows]]
        return indices

    def indices(self, start: int, stop: int) -> np.ndarray:
        """Dataset indices at positions [start, stop) of the order, as an array; the position is unchanged."""
        out = np.empty(max(0, stop - start), dtype=np.int64)
        position = start
        while position < stop:
            index = self._segment_index(position)
            segment = self._segment(index)
            segment_end = self._history[index + 1][0] if index + 1 < len(self._history) else stop
            q = position - self._history[index][0]
            n = min(_CHUNK, stop - position, segment_end - position)
            counts = segment.counts_at(q)
            chosen = segment.next_topics(counts, n)
            taken = np.bincount(chosen, minlength=len(segment.active))
            first_draw = self._segment_starts[index][segment.active] + counts
            # Draws grouped by topic (in draw order within a topic): topic j's are first_draw[j], +1, ...
            grouped = np.argsort(chosen, kind="stable")
            topics = np.repeat(segment.active, taken)
            draws = np.arange(n) + np.repeat(first_draw - (np.cumsum(taken) - taken), taken)
            out[position - start + grouped] = self._dataset_indices(topics, draws)
            position += n
        return out

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
            "custom_orders": {self.topic_names[t]: digest for t, digest in sorted(self._custom_order.items())},
            "history": [{"position": p, "weights": w.tolist()} for p, w in self._history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()`; iteration then continues at its position with the very same indices."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"Sampler state has format {state.get('format')!r}; this version reads {STATE_FORMAT}.")
        if list(state["topic_sizes"]) != self.topic_sizes.tolist():
            raise ValueError(
                "The saved sampler state was made for other topic sizes than this dataset's; "
                "resume on the same training data (same topics, same documents)."
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
        self._drop_segments_from(0)
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
        topics = dataset.with_format("numpy")[column]
        return cls(topics, weights, topic_names=kwargs.pop("topic_names", names), **kwargs)

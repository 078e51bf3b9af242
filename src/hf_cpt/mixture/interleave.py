"""Which group each draw of a mixture comes from: a two-level interleave that keeps every prefix on target.

The groups form a tree of two levels: sources, and the topics of each source (`web-en/Law and Policy`). Every
draw first picks a source, then one of that source's topics, each time by Tijdeman's rule for the chairman
assignment problem (*The chairman assignment problem*, Discrete Math. 32, 1980): among the groups already owed
at least 1/(2n − 2) of a draw (n: active groups of the level), the one whose next draw falls due first.

Every group carries a credit: its cumulative target (the sum over the schedule's segments of weight × length)
minus its draws. Credits carry through weight changes, so a change starts nothing over and re-setting
unchanged weights changes nothing. A topic's credit is counted against its global target, so the topic level
corrects for the source level's own timing.

What this guarantees, and what is measured (docs/topic_mixture.md has the figures):
- constant weights: every source within 1 − 1/(2n − 2) draws of its target at every prefix (the theorem);
- topics: within 2 draws of their targets, measured across weight changes at arbitrary positions;
- no online order can stay within one draw when weights may change arbitrarily at every draw (the weights can
  chase the groups just drawn), so changes as large as the paper's rule makes are what the bounds are tested on.

All arithmetic is on integers (weights quantised to `SCALE` units per draw), so the order is bit-identical on
every rank and machine. The kernel compiles with numba when it is installed; the same function runs as plain
Python otherwise (about 50 times slower).
"""

from __future__ import annotations

import numpy as np

try:  # numba compiles the per-draw loop; without it the very same function runs in the interpreter.
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing

    def njit(*args, **kwargs):
        return args[0] if args and callable(args[0]) else lambda function: function


SCALE = 1 << 30  # one draw, in credit units; a credit times a weight stays below 2**63


def quantize(weights: np.ndarray) -> np.ndarray:
    """Weights as integers summing exactly to `SCALE` (largest remainders); zero weights stay zero."""
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if total <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = weights / total * SCALE
    units = np.floor(exact).astype(np.int64)
    remainders = np.where(weights > 0, exact - units, -1.0)  # never round a zero weight up
    short = SCALE - int(units.sum())
    units[np.argsort(-remainders, kind="stable")[:short]] += 1
    return units


def eligibility_threshold(active: int) -> int:
    """Tijdeman's minimum credit, 1/(2n − 2) of a draw, for a group to be drawn (0 for a single group)."""
    return SCALE // (2 * active - 2) if active > 1 else 0


class SegmentWeights:
    """The integer weights of one segment of the schedule, per topic and per source, and the thresholds.

    Args:
        topic_weights: weight of every topic (leaf group); normalized here.
        source_of_topic: the source id of every topic.
        num_sources: number of sources.
    """

    def __init__(self, topic_weights: np.ndarray, source_of_topic: np.ndarray, num_sources: int) -> None:
        self.topic = quantize(topic_weights)
        # A source's weight is the sum of its topics' units, so its credit is exactly the sum of theirs.
        self.source = np.zeros(num_sources, dtype=np.int64)
        np.add.at(self.source, source_of_topic, self.topic)
        active_topics = np.bincount(source_of_topic[self.topic > 0], minlength=num_sources)
        self.topic_threshold = np.array([eligibility_threshold(int(n)) for n in active_topics], dtype=np.int64)
        self.source_threshold = eligibility_threshold(int(np.count_nonzero(self.source)))


@njit(cache=True)
def _choose(credit, weight, ids, threshold):  # pragma: no cover - compiled
    """The id among `ids` owed at least `threshold` whose next draw falls due first; ties go to the first id.

    Due time of id i, in draws from now: (SCALE − threshold − credit[i]) / weight[i], compared exactly by
    cross-multiplication. When no id is owed the threshold (possible only after a weight change), the one
    due first among all with a positive weight.
    """
    best = -1
    best_eligible = False
    for k in range(len(ids)):
        i = ids[k]
        if weight[i] == 0:
            continue
        eligible = credit[i] >= threshold
        if best >= 0 and best_eligible and not eligible:
            continue
        if best < 0 or (eligible and not best_eligible):
            best, best_eligible = i, eligible
            continue
        if (SCALE - threshold - credit[i]) * weight[best] < (SCALE - threshold - credit[best]) * weight[i]:
            best = i
    return best


@njit(cache=True)
def interleave(
    count,
    source_weight,
    source_threshold,
    topic_weight,
    topic_threshold,
    topic_starts,
    topics_by_source,
    source_credit,
    topic_credit,
    draws,
    out_topic,
    out_draw,
):  # pragma: no cover - compiled
    """Make `count` draws, updating credits and per-topic draw counts in place.

    `topics_by_source[topic_starts[s]:topic_starts[s + 1]]` are the topics of source s. Writes each draw's
    topic and its draw number within that topic (counted across passes) to `out_topic` and `out_draw`.
    """
    num_sources = len(source_weight)
    all_sources = np.arange(num_sources)
    for step in range(count):
        source_credit += source_weight
        topic_credit += topic_weight
        source = _choose(source_credit, source_weight, all_sources, source_threshold)
        source_credit[source] -= SCALE
        members = topics_by_source[topic_starts[source] : topic_starts[source + 1]]
        topic = _choose(topic_credit, topic_weight, members, topic_threshold[source])
        topic_credit[topic] -= SCALE
        out_topic[step] = topic
        out_draw[step] = draws[topic]
        draws[topic] += 1

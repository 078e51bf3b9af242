"""Build time, memory and draw speed of TopicMixtureSampler against two ways of drawing by topic weights.

For each size N (documents), N topic ids are drawn uniformly at random (seeded, one np.uint8 array) over
`--topics` topics, whose weights are one seeded Dirichlet(0.5) draw (skewed). Three samplers then draw
`--draws` indices from the same ids, one after the other in the same process (only one of them alive at
a time):

- TopicMixtureSampler (ours). Build: the constructor. Bytes/doc: its arrays after the build (the int32
  member array plus per-topic arrays). Iteration: `islice(iter(sampler), draws)` consumed by a
  zero-length deque. Bulk: `sampler.indices(0, draws)`, on a fresh sampler. Ours never materialises a
  shuffle: each draw goes through a keyed permutation of its topic, computed on the fly.
- torch.utils.data.WeightedRandomSampler, with per-document weights (topic weight / topic size, float64)
  and replacement. Build: making the weights tensor and the sampler. Bytes/doc: the weights tensor.
  torch.multinomial may refuse more than 2**24 categories; the row then says n/a and why.
- A plain numpy sampler, the obvious way: a stable argsort of the topic ids split into per-topic
  permutations at build time; then, per block of draws, topics chosen by `rng.choice(K, p=weights)` and
  each draw given the next document of its topic's permutation (wrapping around).

The last column is the quality of the mixture: over the drawn order, the largest deviation of a topic's
share in any window of 1,000 consecutive draws from its weight (the goal: under 1 point). Times are
wall clock (time.perf_counter), one run each; the ratios at the end are ours / theirs (build
time: lower is better for ours; indices/s: higher is better for ours).

    python benchmarks/sampler.py [--sizes 1000000 10000000 100000000] [--topics 24] [--draws 2000000] [--quick]
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from hf_cpt.mixture import TopicMixtureSampler

_BLOCK = 1 << 16  # draws per vectorised block of the numpy sampler


class NumpyTopicSampler:
    """Per-topic permutations built up front; topics of each block of draws chosen by rng.choice."""

    def __init__(self, topics: np.ndarray, weights: np.ndarray, num_samples: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.weights = weights
        self.num_samples = num_samples
        self.sizes = np.bincount(topics, minlength=len(weights)).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.order = np.argsort(topics, kind="stable")
        for topic in range(len(weights)):
            self.rng.shuffle(self.order[self.offsets[topic] : self.offsets[topic + 1]])
        self.cursor = np.zeros(len(weights), dtype=np.int64)

    def nbytes(self) -> int:
        return self.order.nbytes + self.sizes.nbytes + self.offsets.nbytes + self.cursor.nbytes

    def block(self, n: int) -> np.ndarray:
        chosen = self.rng.choice(len(self.weights), size=n, p=self.weights)
        by_topic = np.argsort(chosen, kind="stable")
        counts = np.bincount(chosen, minlength=len(self.weights))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(n, dtype=np.int64)
        rank[by_topic] = np.arange(n) - np.repeat(starts, counts)  # rank of each draw within its topic
        position = (self.cursor[chosen] + rank) % self.sizes[chosen]
        self.cursor = (self.cursor + counts) % self.sizes
        return self.order[self.offsets[chosen] + position]

    def __iter__(self) -> Iterator[int]:
        for start in range(0, self.num_samples, _BLOCK):
            yield from self.block(min(_BLOCK, self.num_samples - start)).tolist()


def consume(sampler, draws: int) -> float:
    """Seconds to iterate `draws` indices of `sampler` in plain Python."""
    start = time.perf_counter()
    collections.deque(itertools.islice(iter(sampler), draws), maxlen=0)
    return time.perf_counter() - start


def window_deviation(drawn_topics: np.ndarray, weights: np.ndarray, window: int = 1000) -> float:
    """Largest |share of a topic in a window of `window` consecutive draws - its weight|, in points."""
    worst = 0.0
    for topic, weight in enumerate(weights):
        counts = np.concatenate([[0], np.cumsum(drawn_topics == topic)])
        worst = max(worst, float(np.abs((counts[window:] - counts[:-window]) / window - weight).max()))
    return 100 * worst


def drawn(sampler, draws: int) -> np.ndarray:
    return np.fromiter(itertools.islice(iter(sampler), draws), dtype=np.int64, count=draws)


def short(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:90]


def bench_ours(topics: np.ndarray, weights: np.ndarray, draws: int) -> dict:
    weight_map = {i: float(w) for i, w in enumerate(weights)}
    start = time.perf_counter()
    sampler = TopicMixtureSampler(topics, weight_map, seed=0, num_samples=draws)
    build = time.perf_counter() - start
    row = {"build": build, "bytes": sampler.nbytes / len(topics)}
    row["iter"] = draws / consume(sampler, draws)
    del sampler
    gc.collect()
    sampler = TopicMixtureSampler(topics, weight_map, seed=0, num_samples=draws)  # fresh, as iteration had it
    start = time.perf_counter()
    order = sampler.indices(0, draws)
    row["bulk"] = draws / (time.perf_counter() - start)
    row["window"] = window_deviation(topics[order], weights)
    del sampler
    gc.collect()
    return row


def bench_weighted(topics: np.ndarray, weights: np.ndarray, draws: int) -> dict:
    sizes = np.bincount(topics, minlength=len(weights))
    start = time.perf_counter()
    per_document = torch.from_numpy((weights / sizes)[topics])  # float64, one weight per document
    sampler = WeightedRandomSampler(per_document, num_samples=draws, replacement=True)
    build = time.perf_counter() - start
    row = {"build": build, "bytes": sampler.weights.element_size() * sampler.weights.numel() / len(topics)}
    try:
        row["iter"] = draws / consume(sampler, draws)
        row["window"] = window_deviation(topics[drawn(sampler, draws)], weights)
    except (RuntimeError, ValueError) as error:
        row["error"] = short(error)
    del sampler, per_document
    gc.collect()
    return row


def bench_numpy(topics: np.ndarray, weights: np.ndarray, draws: int) -> dict:
    start = time.perf_counter()
    sampler = NumpyTopicSampler(topics, weights, num_samples=draws, seed=0)
    build = time.perf_counter() - start
    row = {"build": build, "bytes": sampler.nbytes() / len(topics)}
    row["iter"] = draws / consume(sampler, draws)
    row["window"] = window_deviation(topics[drawn(sampler, draws)], weights)
    del sampler
    gc.collect()
    return row


def ratio(ours: dict, theirs: dict, key: str) -> str:
    if key not in ours or key not in theirs:
        return f"n/a ({theirs.get('error', 'not measured')})"
    return f"{ours[key] / theirs[key]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--topics", type=int, default=24)
    parser.add_argument("--draws", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 100000 1000000, 200000 draws")
    options = parser.parse_args()
    if options.quick:
        options.sizes, options.draws = [100_000, 1_000_000], 200_000
    if not 0 < options.topics <= 256:
        parser.error("--topics must be in [1, 256] (topic ids are stored as np.uint8)")
    rng = np.random.default_rng(options.seed)
    weights = np.maximum(rng.dirichlet(np.full(options.topics, 0.5)), 1e-9)
    weights /= weights.sum()
    print(
        f"{options.topics} topics, Dirichlet(0.5) weights: max {weights.max():.3f}, min {weights.min():.2e}; "
        f"{options.draws:,} draws per measurement; numpy {np.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )
    print()
    print(
        "| documents | sampler | build s | bytes/doc | indices/s (iteration) | indices/s (bulk) "
        "| max 1000-draw window deviation (points) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    # Compile the interleave kernels first (numba, cached on disk after the first run), so no row times it.
    bench_ours(np.arange(1000, dtype=np.uint8) % options.topics, weights, 10_000)
    results = {}
    for size in options.sizes:
        topics = np.random.default_rng([options.seed, size]).integers(0, options.topics, size=size, dtype=np.uint8)
        rows = {}
        for name, bench in (
            ("TopicMixtureSampler", bench_ours),
            ("WeightedRandomSampler", bench_weighted),
            ("numpy", bench_numpy),
        ):
            row = bench(topics, weights, options.draws)
            rows[name] = row
            speed = f"{row['iter']:,.0f}" if "iter" in row else f"n/a ({row['error']})"
            bulk = f"{row['bulk']:,.0f}" if "bulk" in row else "—"
            window = f"{row['window']:.2f}" if "window" in row else "n/a"
            cells = f"{row['build']:.3f} | {row['bytes']:.2f} | {speed} | {bulk} | {window}"
            print(f"| {size:,} | {name} | {cells} |", flush=True)
        results[size] = rows
        del topics
        gc.collect()
    print()
    print("Ratios ours / theirs (build time: < 1 means ours builds faster; indices/s: > 1 means ours draws faster)")
    print()
    print("| documents | build ours/WRS | build ours/numpy | indices/s ours/WRS | indices/s ours/numpy |")
    print("|---:|---:|---:|---:|---:|")
    for size, rows in results.items():
        ours, wrs, plain = rows["TopicMixtureSampler"], rows["WeightedRandomSampler"], rows["numpy"]
        print(
            f"| {size:,} | {ratio(ours, wrs, 'build')} | {ratio(ours, plain, 'build')} | "
            f"{ratio(ours, wrs, 'iter')} | {ratio(ours, plain, 'iter')} |"
        )


if __name__ == "__main__":
    main()

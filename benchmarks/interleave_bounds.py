"""How far the mixture's order strays from its targets: the largest |draws − cumulative target| over every prefix.

Three schedules over 26 groups in 6 sources (three with topics, as `source/topic`), weights floored at 0.005,
each over `--trials` seeded random configurations of `--draws` draws:

- constant weights (Tijdeman's theorem bounds every source by 1 − 1/(2n − 2) = 0.9 draws for n = 6);
- changes as large as the §3.2.1 rule makes (every weight times a factor in [1 − α, 1 + α], α up to 0.9) at up
  to 100 random positions;
- drastic changes (fresh Dirichlet(0.5) weights) at up to 60 random positions.

Beside it, independent draws by the same weights (what `numpy.random.choice` or `interleave_datasets` do).

    python benchmarks/interleave_bounds.py [--trials 100] [--draws 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from hf_cpt.mixture import TopicMixtureSampler

NAMES = [f"web-en/t{i}" for i in range(13)] + [f"web-cn/t{i}" for i in range(9)]
NAMES += ["book-en/t0", "code-en", "math-en", "synthesis-en"]
SOURCES = sorted({name.split("/")[0] for name in NAMES})
MEMBERSHIP = np.eye(len(SOURCES))[[SOURCES.index(name.split("/")[0]) for name in NAMES]]


def errors(order: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Largest prefix deviation per source and per topic, for drawn groups `order` and per-draw `weights`."""
    target = np.cumsum(weights, axis=0)
    drawn = np.cumsum(np.eye(len(NAMES))[order], axis=0)
    return float(np.abs((drawn - target) @ MEMBERSHIP).max()), float(np.abs(drawn - target).max())


def schedule(kind: str, rng: np.random.Generator, draws: int) -> list[tuple[int, np.ndarray]]:
    weights = np.maximum(rng.dirichlet(np.full(len(NAMES), 0.5)), 0.005)
    changes = [(0, weights / weights.sum())]
    if kind == "constant":
        return changes
    count = int(rng.integers(5, 100 if kind == "rule" else 60))
    for position in sorted(set(rng.integers(1, draws, count).tolist())):
        if kind == "rule":
            weights = weights * (1 + rng.choice([0.3, 0.5, 0.9]) * rng.uniform(-1, 1, len(NAMES)))
        else:
            weights = rng.dirichlet(np.full(len(NAMES), 0.5))
        weights = np.maximum(weights / weights.sum(), 0.005)
        changes.append((position, weights / weights.sum()))
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--draws", type=int, default=2000)
    options = parser.parse_args()
    topics = np.repeat(np.arange(len(NAMES)), 400)
    print("| schedule | sampler | worst source deviation (draws) | worst topic deviation (draws) |")
    print("|---|---|---:|---:|")
    for kind in ("constant", "rule", "drastic"):
        worst = {"TopicMixtureSampler": [0.0, 0.0], "independent draws": [0.0, 0.0]}
        rng = np.random.default_rng(0)
        for trial in range(options.trials):
            changes = schedule(kind, rng, options.draws)
            per_draw = np.zeros((options.draws, len(NAMES)))
            bounds = [position for position, _ in changes] + [options.draws]
            for (start, weights), end in zip(changes, bounds[1:], strict=True):
                per_draw[start:end] = weights
            sampler = TopicMixtureSampler(topics, dict(enumerate(changes[0][1])), seed=trial, topic_names=NAMES)
            for position, weights in changes[1:]:
                sampler.set_weights(dict(enumerate(weights)), position=position)
            ours = topics[sampler.indices(0, options.draws)]
            independent = np.array([rng.choice(len(NAMES), p=row) for row in per_draw])
            for name, order in (("TopicMixtureSampler", ours), ("independent draws", independent)):
                worst[name] = [max(a, b) for a, b in zip(worst[name], errors(order, per_draw), strict=True)]
        for name, (source, topic) in worst.items():
            print(f"| {kind} | {name} | {source:.3f} | {topic:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""Training orders of §3.2.2 and §4.2: by difficulty (perplexity) or by discipline, as permutations.

Difficulty orders cut the documents into ten equal-count groups by perplexity (the paper's "ten groups
in total") and play the groups low → high (`LH`, the paper's choice) or high → low (`HL`), shuffled
by seed inside each group; `RM` is a seeded random order. Discipline orders play whole disciplines one
after another: `PB` physics → biochemistry, `BP` the reverse, `PBP` physics → biochemistry → physics
(each physics half a random half of the physics documents). The paper found `LH` best and discipline
ordering harmful; all are here to reproduce that comparison.

An order is a permutation of positions [0, n) of the scored documents; a sampler draws a topic's
documents in it (`TopicMixtureSampler.set_topic_order`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIFFICULTY_ORDERS = ("LH", "HL", "RM")
# Discipline orders: each stage is a set of discipline labels ("biochemistry" = biology and chemistry).
DISCIPLINE_ORDERS: dict[str, tuple[frozenset[str], ...]] = {
    "PB": (frozenset({"physics"}), frozenset({"biology", "chemistry"})),
    "BP": (frozenset({"biology", "chemistry"}), frozenset({"physics"})),
    "PBP": (frozenset({"physics"}), frozenset({"biology", "chemistry"}), frozenset({"physics"})),
}
ORDERS = DIFFICULTY_ORDERS + tuple(DISCIPLINE_ORDERS)
RESCORABLE_ORDERS = ("LH", "HL")  # the orders a re-scoring can re-sort: by perplexity


def check_curriculum(order: str | None, rescore_steps: int | None = None, *, prefix: str = "") -> None:
    """Fail unless `order` is one of `ORDERS` and `rescore_steps`, when set, is >= 1 with an order by perplexity.

    `prefix` goes before the field names in the errors (`curriculum_` for the fields of a `CPTConfig`).
    """
    if rescore_steps is not None and (order not in RESCORABLE_ORDERS or rescore_steps < 1):
        raise ValueError(
            f"{prefix}rescore_steps is {rescore_steps} with {prefix}order {order!r}; re-scoring needs {prefix}order "
            "LH or HL and a step count >= 1 (or leave it unset)."
        )
    if order not in ORDERS:
        raise ValueError(f"{prefix}order {order!r} is not a known curriculum; use one of {list(ORDERS)}.")


def check_scores(scores: Sequence[float] | np.ndarray, num_documents: int | None = None) -> np.ndarray:
    """Scores as a float array; a length mismatch or a NaN is an error naming the fix."""
    scores = np.asarray(scores, dtype=np.float64)
    if num_documents is not None and len(scores) != num_documents:
        raise ValueError(
            f"scores has {len(scores)} values for {num_documents} documents; score exactly the documents ordered."
        )
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise ValueError(f"scores[{bad[0]}] is {scores[bad[0]]}; every document needs a finite perplexity.")
    return scores


def difficulty_groups(scores: Sequence[float] | np.ndarray, num_groups: int = 10) -> np.ndarray:
    """Group of each document, 0 (lowest perplexity) to num_groups − 1, equal counts (± 1); ties by position."""
    scores = check_scores(scores)
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[np.argsort(scores, kind="stable")] = np.arange(len(scores))
    return ranks * num_groups // max(1, len(scores))


def curriculum_order(
    order: str,
    scores: Sequence[float] | np.ndarray | None = None,
    disciplines: Sequence[str] | None = None,
    seed: int = 0,
    num_groups: int = 10,
) -> np.ndarray:
    """The permutation of document positions that `order` plays (see the module docstring).

    Args:
        order: one of `ORDERS`.
        scores: per-document perplexity, for `LH` and `HL` (and the document count for `RM`).
        disciplines: per-document discipline label, for `PB`, `BP` and `PBP`.
        seed: shuffles documents within a group (and the physics halves of `PBP`).
    """
    check_curriculum(order)
    rng = np.random.default_rng(seed)
    if order in DISCIPLINE_ORDERS:
        if disciplines is None:
            raise ValueError(
                f"order {order!r} needs the disciplines of the documents; pass disciplines= (in the recipe: "
                "source_options: {synthesis-en: {pack_by: discipline}})."
            )
        return _discipline_order(DISCIPLINE_ORDERS[order], np.asarray(disciplines), rng, order)
    if scores is None:
        raise ValueError(f"order {order!r} needs the documents' perplexity; pass scores= (see score_perplexity).")
    scores = check_scores(scores)
    if order == "RM":
        return rng.permutation(len(scores))
    groups = difficulty_groups(scores, num_groups)
    sequence = range(num_groups) if order == "LH" else range(num_groups - 1, -1, -1)
    return np.concatenate([rng.permutation(np.flatnonzero(groups == group)) for group in sequence])


def _discipline_order(
    stages: tuple[frozenset[str], ...], disciplines: np.ndarray, rng: np.random.Generator, name: str
) -> np.ndarray:
    known = frozenset().union(*stages)
    outside = np.flatnonzero(~np.isin(disciplines, sorted(known)))
    if len(outside):
        raise ValueError(
            f"order {name!r} orders {sorted(known)} documents only, but document {outside[0]} is "
            f"{str(disciplines[outside[0]])!r}; select those disciplines first."
        )
    visits = {}  # each distinct stage: its documents, shuffled, split into as many parts as it is visited
    for stage in dict.fromkeys(stages):
        members = rng.permutation(np.flatnonzero(np.isin(disciplines, sorted(stage))))
        visits[stage] = np.array_split(members, stages.count(stage))
    return np.concatenate([visits[stage].pop(0) for stage in stages])

"""Exact and near-duplicate detection: normalized-text digests, MinHash over word shingles, LSH banding, union-find.

Synthetic QA is generated in the millions from overlapping seeds, so the same pair comes back verbatim or reworded
in a few places; training on the repeats wastes tokens. Everything here is numpy and the standard library,
deterministic and vectorised (`benchmarks/dedup.py` measures it); docs/synth.md explains the choices.

- `exact_duplicates` / `first_occurrences`: a 128-bit blake2b digest of the normalized text
  (`hf_cpt.utils.text.normalize`); the first occurrence is kept.
- `near_duplicates`: MinHash (`MinHasher`) over word 5-gram shingles, LSH banding (`lsh_params`) for candidates,
  exact Jaccard verification, union-find clusters, the lowest index of a cluster kept.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from hf_cpt.utils.hashing import POLYNOMIAL_BASE, splitmix64
from hf_cpt.utils.text import encode_tokens, ngram_hashes, normalize, normalized_chunks

__all__ = [
    "CANDIDATE_RECALL",
    "MERSENNE_PRIME",
    "MinHasher",
    "check_threshold",
    "exact_duplicates",
    "first_occurrences",
    "lsh_params",
    "near_duplicates",
    "shingle_hashes",
]

MERSENNE_PRIME = (1 << 61) - 1  # modulus of the MinHash permutations
CANDIDATE_RECALL = 0.99  # chance that a pair exactly at the threshold becomes an LSH candidate when verifying

_P = np.uint64(MERSENNE_PRIME)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW29 = np.uint64((1 << 29) - 1)


def check_threshold(name: str, value: float, hint: str) -> None:
    """Rejects a similarity outside (0, 1], naming the argument."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} is {value}; set it to a value in (0, 1]{hint}.")


def exact_duplicates(texts: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows to drop: those whose normalized text already occurred (the first one is kept)."""
    return first_occurrences(texts) >= 0


def first_occurrences(texts: Sequence[str]) -> np.ndarray:
    """For each row, the index of the first row with the same normalized text, or -1 if it is that first row."""
    first: dict[bytes, int] = {}
    result = np.full(len(texts), -1, dtype=np.int64)
    for index, text in enumerate(texts):
        digest = hashlib.blake2b(normalize(text).encode(), digest_size=16).digest()
        seen = first.setdefault(digest, index)
        if seen != index:
            result[index] = seen
    return result


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the `ngram`-token shingles of `text` (one shingle if it is shorter).

    The same hashes `near_duplicates` uses, exposed for checks and reference implementations.
    """
    tokens, counts = encode_tokens([normalize(text)])
    return np.unique(ngram_hashes(tokens, counts, ngram, whole_if_shorter=True)[0])


def _mod_p(values: np.ndarray) -> np.ndarray:
    """`values mod (2**61 - 1)` for any uint64 array, as a new array.

    Since 2**61 = 1 (mod p), folding the top 3 bits onto the low 61 gives a congruent value below 2**61 + 8; one
    conditional subtraction finishes. The subtraction is branch-free: for t < p, t - p wraps around to above 2**63,
    so min(t, t - p) is t; for t >= p it is t - p.
    """
    folded = (values & _P) + (values >> np.uint64(61))
    return np.minimum(folded, folded - _P, out=folded)


def _mulmod_unreduced(x: np.ndarray, a: int) -> np.ndarray:
    """A value below 2**63 congruent to `a * x` modulo p = 2**61 - 1, for x < p (uint64 array) and a < p (int).

    numpy has no 128-bit product, so both factors are split into 32-bit halves: a = ah * 2**32 + al, x likewise,
    with ah, xh < 2**29. Then a * x = ah*xh * 2**64 + (ah*xl + al*xh) * 2**32 + al*xl, and each part is reduced
    with 2**61 = 1 (mod p) without leaving 64 bits: 2**64 = 8 (mod p), so ah*xh (< 2**58) contributes
    8 * ah*xh < 2**61; the middle sum m < 2**62 splits as m = mh * 2**29 + ml, and m * 2**32 = mh + ml * 2**32
    (mod p), both below 2**61; al*xl < 2**64 fits and folds to below 2**61 + 8. The four parts add to below 2**63,
    so the caller can add one more value below p and reduce with `_mod_p`.
    """
    a_high, a_low = np.uint64(a >> 32), np.uint64(a & 0xFFFFFFFF)
    x_high, x_low = x >> np.uint64(32), x & _LOW32
    middle = a_high * x_low + a_low * x_high
    low = a_low * x_low
    result = (a_high * x_high) << np.uint64(3)
    result += (middle >> np.uint64(29)) + ((middle & _LOW29) << np.uint64(32))
    result += (low & _P) + (low >> np.uint64(61))
    return result


class MinHasher:
    """MinHash signatures: for each of `num_perm` permutations, the minimum permuted shingle hash of a text.

    Permutation k maps a shingle hash x (taken modulo p = 2**61 - 1) to (a_k * x + b_k) mod p, the universal
    hashing of Carter and Wegman, computed exactly (see `_mulmod_unreduced`; no silent uint64 overflow). The
    parameters form arithmetic progressions, a_k = a_0 + k*d and b_k = b_0 + k*e (mod p), from four seeded draws:
    for k != k', (a_k, b_k, a_k', b_k') is a bijective image of (a_0, d, b_0, e), hence (nearly) uniform over
    Z_p**4, so any two permutations are independent members of the family, which is all the variance of the
    Jaccard estimate depends on. The progression is what makes the signatures cheap: permutation k+1 of x is
    permutation k plus (d*x + e) mod p, so after two exact products per shingle each further permutation costs an
    addition and a reduction instead of a 122-bit product. Signatures hold values below p as uint64
    (num_perm * 8 bytes per text); a text without tokens gets p in every position, a value no shingle can take.
    """

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 0) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm is {num_perm}; set it to at least 1 (128 is usual).")
        if ngram < 1:
            raise ValueError(f"ngram is {ngram}; set it to at least 1 (5 words is usual).")
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        rng = np.random.default_rng(seed)
        while True:
            a0, d = (int(value) for value in rng.integers(1, MERSENNE_PRIME, size=2))
            b0, e = (int(value) for value in rng.integers(0, MERSENNE_PRIME, size=2))
            self.a = [(a0 + k * d) % MERSENNE_PRIME for k in range(num_perm)]
            if all(self.a):  # a_k = 0 would be a constant map; redraw (probability about num_perm / 2**61)
                break
        self.b = [(b0 + k * e) % MERSENNE_PRIME for k in range(num_perm)]
        self._step = (d, e)

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """Signatures of `texts`, shape (len(texts), num_perm), uint64."""
        signatures = np.full((len(texts), self.num_perm), MERSENNE_PRIME, dtype=np.uint64)
        for rows, normalized in normalized_chunks(texts):
            tokens, counts = encode_tokens(normalized)
            present = np.flatnonzero(counts)
            if len(present):
                hashes, text, _ = ngram_hashes(tokens, counts, self.ngram, whole_if_shorter=True)
                signatures[np.asarray(rows)[present]] = self._minima(hashes, np.searchsorted(text, present))
        return signatures

    def _minima(self, hashes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """(texts, num_perm) minima of the permuted shingle `hashes`, each text's run starting at `starts`."""
        x = _mod_p(hashes)
        d, e = self._step
        permuted = _mod_p(_mulmod_unreduced(x, self.a[0]) + np.uint64(self.b[0]))
        step = _mod_p(_mulmod_unreduced(x, d) + np.uint64(e))
        scratch = np.empty_like(permuted)
        minima = np.empty((self.num_perm, len(starts)), dtype=np.uint64)
        for k in range(self.num_perm):
            np.minimum.reduceat(permuted, starts, out=minima[k])
            if k + 1 < self.num_perm:
                np.add(permuted, step, out=permuted)  # both below p, so the sum stays below 2**62
                np.subtract(permuted, _P, out=scratch)
                np.minimum(permuted, scratch, out=permuted)
        return minima.T


def _collision_probability(similarity: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """Chance that two texts of Jaccard `similarity` share at least one of `bands` bands of `rows` rows."""
    return 1.0 - (1.0 - np.power(similarity, rows)) ** bands


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, verified: bool = True) -> tuple[int, int]:
    """LSH banding (bands, rows per band) for a Jaccard `threshold` with `num_perm` signature positions.

    Two documents become candidates when all `rows` positions of at least one band agree, which happens with
    probability 1 - (1 - J**rows)**bands at Jaccard J. The choice depends on what decides:

    - `verified=True` (candidates then checked by exact Jaccard): false candidates cost only a check, missed ones
      are lost for good, so we take the largest `rows` (fewest false candidates) whose bands (num_perm // rows)
      still make a pair exactly at the threshold a candidate with probability `CANDIDATE_RECALL`. For 0.8 and 128
      that is 21 bands of 6 rows; datasketch's balanced choice (9 x 13) would find only 40 % of such pairs.
    - `verified=False` (a candidate is dropped as is): the banding is the classifier, so we take the pair that
      minimises the area of false positives below the threshold plus false negatives above it, equally weighted,
      as datasketch does (9 x 13 for 0.8 and 128).
    """
    check_threshold("threshold", threshold, " (0.8 is usual)")
    if num_perm < 1:
        raise ValueError(f"num_perm is {num_perm}; set it to at least 1 (128 is usual).")
    if verified:
        for rows in range(num_perm, 0, -1):
            bands = num_perm // rows
            if _collision_probability(threshold, bands, rows) >= CANDIDATE_RECALL:
                return bands, rows
        return num_perm, 1
    similarity = np.linspace(0.0, 1.0, 1001)  # areas as Riemann sums on this grid; the ranking is what matters
    below, above = similarity <= threshold, similarity >= threshold
    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            probability = _collision_probability(similarity, bands, rows)
            error = probability[below].sum() + (1.0 - probability[above]).sum()
            if best is None or error < best[0]:
                best = (error, bands, rows)
    return best[1], best[2]


class _Clusters:
    """Union-find over row indices whose root is always the lowest index of its cluster (the row kept)."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, index: int) -> int:
        parent = self.parent
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    def union(self, first: int, second: int) -> None:
        first, second = self.find(first), self.find(second)
        if first != second:
            self.parent[max(first, second)] = min(first, second)


def _band_buckets(signatures: np.ndarray, rows: np.ndarray, bands: int, band_rows: int) -> Iterator[np.ndarray]:
    """Row indices (ascending) of every band bucket holding more than one row.

    Each band's `band_rows` signature values are hashed to one 64-bit key (polynomial then `splitmix64`), so
    bucketing is a sort of uint64 keys. Two different band contents may collide in 64 bits (about 2**-64 per
    pair): that only adds a candidate, which verification rejects.
    """
    for band in range(bands):
        columns = signatures[:, band * band_rows : (band + 1) * band_rows]
        keys = np.zeros(len(rows), dtype=np.uint64)
        for column in columns.T:
            keys *= np.uint64(POLYNOMIAL_BASE)
            keys += column
        keys = splitmix64(keys, in_place=True)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        boundaries = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [len(keys)]])
        for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            yield rows[order[start:end]]


def _shingle_sets(texts: Sequence[str], indices: Sequence[int], ngram: int) -> dict[int, np.ndarray]:
    """Sorted distinct shingle hashes of the given rows, for exact Jaccard checks."""
    sets: dict[int, np.ndarray] = {}
    for rows, normalized in normalized_chunks(texts, indices):
        tokens, counts = encode_tokens(normalized)
        hashes, text, _ = ngram_hashes(tokens, counts, ngram, whole_if_shorter=True)
        order = np.lexsort((hashes, text))
        hashes, text = hashes[order], text[order]
        distinct = np.ones(len(hashes), dtype=bool)
        distinct[1:] = (hashes[1:] != hashes[:-1]) | (text[1:] != text[:-1])
        hashes, text = hashes[distinct], text[distinct]
        pieces = np.split(hashes, np.cumsum(np.bincount(text, minlength=len(rows)))[:-1])
        sets.update(zip(rows, pieces, strict=True))
    return sets


def _jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Jaccard similarity of two sorted distinct hash arrays."""
    shared = np.intersect1d(first, second, assume_unique=True).size
    return shared / (first.size + second.size - shared)


def near_duplicates(
    texts: Sequence[str],
    threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    seed: int = 0,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to drop as near duplicates, and for each row the kept row it duplicates (-1 for rows kept).

    Similarity is the Jaccard index of the sets of `ngram`-word shingles. MinHash signatures (`MinHasher`) go
    through LSH banding (`lsh_params`); with `verify`, each candidate pair is checked by exact Jaccard on the
    64-bit shingle hashes, so a dropped row really is at least `threshold`-similar to another row of its cluster.
    Within a bucket, a row is compared to the bucket's earlier rows that start a cluster of their own, and rows
    already in a cluster together are not compared again. Accepted pairs are joined by union-find, and the lowest
    index of each cluster is kept: clusters are transitive, so a row may be dropped for a chain of similar rows.
    Texts without tokens are never near duplicates (exact deduplication handles them). Shingle sets are held
    only for rows that land in a shared bucket, about 8 bytes per word of those rows.
    """
    check_threshold("threshold", threshold, " (0.8 is usual)")
    hasher = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed)
    signatures = hasher.signatures(texts)
    present = np.flatnonzero(signatures[:, 0] != MERSENNE_PRIME)
    bands, band_rows = lsh_params(threshold, num_perm, verify)
    buckets = _band_buckets(signatures[present], present, bands, band_rows)
    clusters = _Clusters(len(texts))
    if verify:
        buckets = list(buckets)
        candidates = np.unique(np.concatenate(buckets)) if buckets else np.empty(0, dtype=np.int64)
        sets = _shingle_sets(texts, candidates.tolist(), ngram)
        rejected: set[tuple[int, int]] = set()
        for bucket in buckets:
            leaders: list[int] = []
            for row in bucket.tolist():
                for leader in leaders:
                    if clusters.find(leader) == clusters.find(row):
                        break
                    if (leader, row) not in rejected:
                        if _jaccard(sets[leader], sets[row]) >= threshold:
                            clusters.union(leader, row)
                            break
                        rejected.add((leader, row))
                else:
                    leaders.append(row)
    else:
        for bucket in buckets:
            first = int(bucket[0])
            for row in bucket[1:].tolist():
                clusters.union(first, row)
    representative = np.array([clusters.find(row) for row in range(len(texts))], dtype=np.int64)
    drop = representative != np.arange(len(texts))
    representative[~drop] = -1
    return drop, representative

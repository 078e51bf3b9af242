"""Exact and near-duplicate removal, and benchmark decontamination, for synthetic QA pairs and general corpora.

Synthetic QA is generated in the millions from overlapping seeds, so the same pair comes back verbatim, reworded in
a few places, or with a benchmark question copied in from the model's memory. Training on those repeats wastes
tokens, and training on benchmark items inflates the evaluation this package reports. Everything here is numpy and
the standard library, deterministic, single-threaded and vectorised: millions of ~300-word items take minutes, not
hours (`benchmarks/dedup.py` measures it).

How texts are compared, and why:

- **Normalisation** (`tokenize`): Unicode NFKC, casefolding, punctuation and symbols turned into spaces, format
  characters (zero-width spaces, soft hyphens) removed, whitespace collapsed. Tokens are words, except that CJK
  characters (Han, Hiragana, Katakana), written without spaces, are one token each while Latin words inside CJK text
  stay whole; n-grams then mean the same thing in Chinese benchmark questions as in English ones.
- **Exact duplicates** (`exact_duplicates`): a 128-bit blake2b digest of the normalised text; the first occurrence
  is kept, so copies that differ only in case, punctuation or spacing go.
- **Near duplicates** (`near_duplicates`): MinHash over word 5-gram shingles, LSH banding for candidates,
  exact Jaccard verification of candidates, union-find clusters, the lowest index of a cluster kept. Details of
  the hashing are on `MinHasher`, of the banding on `lsh_params`.
- **Decontamination** (`Decontaminator`): a 10-gram (20 characters for CJK) shared with a benchmark item makes a
  candidate, and a difflib ratio between that item and the aligned window of the document confirms it, so a
  copied question is dropped while a text that merely shares a stock phrase is kept.

`filter_dataset` runs all three on a `datasets.Dataset` and says what it dropped and why.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from datasets import Dataset, Value

__all__ = [
    "DROP_REASONS",
    "MERSENNE_PRIME",
    "BenchmarkMatch",
    "Decontaminator",
    "FilterReport",
    "MinHasher",
    "exact_duplicates",
    "filter_dataset",
    "lsh_params",
    "near_duplicates",
    "normalize",
    "shingle_hashes",
    "tokenize",
]

# Every reason `filter_dataset` drops a row for, with what it means.
DROP_REASONS: dict[str, str] = {
    "contaminated": "the text contains a benchmark item (shared n-gram confirmed by a difflib ratio)",
    "exact_duplicate": "the normalised text equals that of an earlier row",
    "near_duplicate": "the shingle Jaccard similarity with an earlier row reaches the threshold",
}

MERSENNE_PRIME = (1 << 61) - 1  # modulus of the MinHash permutations
CANDIDATE_RECALL = 0.99  # chance that a pair exactly at the threshold becomes an LSH candidate when verifying

_P = np.uint64(MERSENNE_PRIME)
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW29 = np.uint64((1 << 29) - 1)
# Polynomial base of the n-gram hashes (odd, so invertible modulo 2**64) and its inverse.
_BASE = 0x9E3779B97F4A7C15
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
_SPACE = ord(" ")  # the only separator left in normalised text
_CHUNK_CHARS = 1 << 19  # characters of normalised text hashed per vectorised step (about 80,000 words)
_EXAMPLES_PER_REASON = 3
_SNIPPET_CHARS = 200

# Han (unified, extensions, compatibility), Hiragana and Katakana: scripts written without spaces between words.
_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")


@functools.cache
def _strip_table() -> dict[int, str | None]:
    """`str.translate` table: punctuation, symbols, separators and controls become spaces; format characters go.

    Built once from the Unicode database rather than `string.punctuation`, so CJK and full-width punctuation
    (。，「」) separate tokens too. Every character `str.split` treats as whitespace is a separator (Z*) or a control
    (Cc), so after the table a plain space is the only separator left, and splitting the UTF-8 bytes on b" " (what
    `_encode` does) gives exactly the tokens of `str.split()`. Format characters (zero-width spaces, soft hyphens)
    sit inside words, so they are deleted rather than spaced.
    """
    table: dict[int, str | None] = {}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category[0] in "PSZ" or category == "Cc":
            table[code] = " "
        elif category == "Cf":
            table[code] = None
    return table


def _normalised(text: str) -> str:
    """`text` in NFKC, casefolded, through `_strip_table`, with a space on both sides of every CJK character."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_strip_table())
    if text.isascii() or _CJK_CHAR.search(text) is None:
        return text
    return _CJK_CHAR.sub(r" \g<0> ", text)


def tokenize(text: str) -> list[str]:
    """Matching tokens of `text`: words, and single characters for CJK scripts (see the module docstring)."""
    return _normalised(text).split()


def normalize(text: str) -> str:
    """The normalised form of `text` that exact deduplication compares: its tokens joined by single spaces."""
    return " ".join(tokenize(text))


def _is_cjk(tokens: Sequence[str]) -> bool:
    """Whether at least half the tokens are CJK characters, so n-grams should count characters, not words."""
    cjk = sum(1 for token in tokens if len(token) == 1 and _CJK_CHAR.match(token))
    return 2 * cjk >= len(tokens)


def _encode(normalised: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the tokens of normalised texts (see `_normalised`), concatenated, and the tokens per text.

    Tokens are hashed in numpy from the UTF-8 bytes rather than one by one in Python, which costs about as much as
    all 128 MinHash permutations together: the texts are joined by spaces, a token is a maximal run of non-space
    bytes, and its hash is the polynomial hash of those bytes (`_span_hashes`). Unlike Python's `hash()`, which is
    salted per process, the result is the same in every run and every worker.
    """
    encoded = [text.encode() for text in normalised]
    blob = np.frombuffer(b" ".join(encoded), dtype=np.uint8)
    in_token = np.zeros(len(blob) + 2, dtype=np.int8)
    in_token[1:-1] = blob != _SPACE
    edges = np.diff(in_token)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    text_starts = np.cumsum([0] + [len(text) + 1 for text in encoded[:-1]])
    owners = np.searchsorted(text_starts, starts, side="right") - 1
    counts = np.bincount(owners, minlength=len(encoded))
    return _span_hashes(blob.astype(np.uint64), starts, ends), counts


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place: spreads every input bit over the whole 64-bit word."""
    values ^= values >> np.uint64(30)
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


@functools.lru_cache(maxsize=8)
def _powers(base: int, size: int) -> np.ndarray:
    """base**0 .. base**(size-1) modulo 2**64 (uint64 products wrap), read-only and cached.

    Callers ask for a power of two at least as long as they need, so a whole run reuses a few tables instead of
    recomputing one per chunk.
    """
    powers = np.ones(size, dtype=np.uint64)
    np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=powers[1:])
    powers.flags.writeable = False
    return powers


def _span_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hashes of the spans values[start:end] (uint64 values), for many spans at once.

    A span hashes as the polynomial sum(v_j * BASE**(end-1-j)) modulo 2**64, then `_mix`. It is read off prefix
    sums S[i] = sum_{j<i} v_j * BASE**-j (BASE is odd, hence invertible modulo 2**64) as
    BASE**(end-1) * (S[end] - S[start]), so a span costs the same few operations however long it is (bytes of a
    word, 5-word shingles, 20-character n-grams alike). uint64 arithmetic wraps, which is exactly arithmetic
    modulo 2**64.
    """
    if len(starts) == 0:
        return np.empty(0, dtype=np.uint64)
    size = 1 << (len(values) - 1).bit_length()
    prefix = np.zeros(len(values) + 1, dtype=np.uint64)
    np.cumsum(values * _powers(_BASE_INVERSE, size)[: len(values)], out=prefix[1:])
    hashes = _powers(_BASE, size)[ends - 1]
    hashes *= prefix[ends] - prefix[starts]
    return _mix(hashes)


def _windows(
    tokens: np.ndarray, counts: np.ndarray, n: int, whole_if_shorter: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of every window of `n` consecutive tokens inside each text: (hash, text, start position).

    `tokens` and `counts` come from `_encode`; windows never cross from one text into the next. With
    `whole_if_shorter`, a non-empty text of fewer than `n` tokens yields one window of all its tokens (so a 3-word
    text still has a shingle); otherwise it yields none (it cannot contain an n-gram).
    """
    windows = np.maximum(counts - n + 1, 0)
    if whole_if_shorter:
        windows[(counts > 0) & (counts < n)] = 1
    total = int(windows.sum())
    text = np.repeat(np.arange(len(counts)), windows)
    position = np.arange(total) - np.repeat(np.cumsum(windows) - windows, windows)
    first_token = (np.cumsum(counts) - counts)[text]
    starts = first_token + position
    ends = np.minimum(starts + n, first_token + counts[text])
    return _span_hashes(tokens, starts, ends), text, position


def _chunks(rows: Iterable[tuple[int, str]]) -> Iterator[tuple[list[int], list[str]]]:
    """Groups of (row indices, their normalised texts) of about `_CHUNK_CHARS` characters, in the order given.

    Chunks keep the working arrays of the vectorised hashing small, whatever the size of the corpus.
    """
    indices: list[int] = []
    texts: list[str] = []
    size = 0
    for index, text in rows:
        indices.append(index)
        texts.append(text)
        size += len(text)
        if size >= _CHUNK_CHARS:
            yield indices, texts
            indices, texts, size = [], [], 0
    if indices:
        yield indices, texts


def _normalised_rows(texts: Sequence[str], indices: Iterable[int]) -> Iterator[tuple[int, str]]:
    """(index, normalised text) of the given rows, computed lazily so one chunk at a time is held."""
    return ((index, _normalised(texts[index])) for index in indices)


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """Sorted distinct 64-bit hashes of the `ngram`-token shingles of `text` (one shingle if it is shorter).

    The same hashes `near_duplicates` uses, exposed for checks and reference implementations.
    """
    tokens, counts = _encode([_normalised(text)])
    return np.unique(_windows(tokens, counts, ngram, whole_if_shorter=True)[0])


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
        for rows, normalised in _chunks(_normalised_rows(texts, range(len(texts)))):
            tokens, counts = _encode(normalised)
            present = np.flatnonzero(counts)
            if len(present):
                hashes, text, _ = _windows(tokens, counts, self.ngram, whole_if_shorter=True)
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
    _check_threshold("threshold", threshold, " (0.8 is usual)")
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


def _check_threshold(name: str, value: float, hint: str) -> None:
    """Rejects a similarity outside (0, 1], naming the argument."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} is {value}; set it to a value in (0, 1]{hint}.")


def exact_duplicates(texts: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows to drop: those whose normalised text already occurred (the first one is kept)."""
    return _first_occurrence(texts) >= 0


def _first_occurrence(texts: Sequence[str]) -> np.ndarray:
    """For each row, the index of the first row with the same normalised text, or -1 if it is that first row."""
    first: dict[bytes, int] = {}
    result = np.full(len(texts), -1, dtype=np.int64)
    for index, text in enumerate(texts):
        digest = hashlib.blake2b(normalize(text).encode(), digest_size=16).digest()
        seen = first.setdefault(digest, index)
        if seen != index:
            result[index] = seen
    return result


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

    Each band's `band_rows` signature values are hashed to one 64-bit key (polynomial then `_mix`), so bucketing is
    a sort of uint64 keys. Two different band contents may collide in 64 bits (about 2**-64 per pair): that only
    adds a candidate, which verification rejects.
    """
    for band in range(bands):
        columns = signatures[:, band * band_rows : (band + 1) * band_rows]
        keys = np.zeros(len(rows), dtype=np.uint64)
        for column in columns.T:
            keys *= np.uint64(_BASE)
            keys += column
        keys = _mix(keys)
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
    for rows, normalised in _chunks(_normalised_rows(texts, indices)):
        tokens, counts = _encode(normalised)
        hashes, text, _ = _windows(tokens, counts, ngram, whole_if_shorter=True)
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
    _check_threshold("threshold", threshold, " (0.8 is usual)")
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


@dataclass(frozen=True)
class BenchmarkMatch:
    """A confirmed benchmark match: which item, how close, and the start of its text for reports."""

    index: int  # position of the item among the benchmark texts given to the Decontaminator
    ratio: float  # difflib ratio between the item and the aligned window of the document
    snippet: str


def _snippet(text: str) -> str:
    """`text` with whitespace collapsed, cut to `_SNIPPET_CHARS` characters."""
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[: _SNIPPET_CHARS - 1] + "…"


@dataclass
class _NgramIndex:
    """Benchmark n-grams of one size, sorted by hash: where each occurs first in which benchmark item."""

    hashes: np.ndarray
    items: np.ndarray
    positions: np.ndarray

    def lookup(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The queries found: their positions in `queries`, first index entry, and number of entries each.

        Queries are binary-searched in sorted order: numpy then narrows each search from the previous one, which is
        several times faster than searching them as they come, and almost all of them are misses.
        """
        order = np.argsort(queries)
        ordered = queries[order]
        first = np.searchsorted(self.hashes, ordered)
        found = first < len(self.hashes)
        found[found] = self.hashes[first[found]] == ordered[found]
        hits, first = order[found], first[found]
        counts = np.searchsorted(self.hashes, queries[hits], side="right") - first
        return hits, first, counts


class Decontaminator:
    """Finds benchmark items inside documents: an n-gram overlap, confirmed by a difflib ratio.

    Each benchmark text is tokenised like everything else; its n-grams are `ngram` words, or `cjk_ngram`
    characters when at least half its tokens are CJK characters. A text shorter than that is matched whole: its
    single n-gram is all of it, so it must occur as a contiguous run of tokens (a substring on token boundaries).
    Pass questions or passages, not bare answers, since a one-word item would match every text containing it.

    A document is contaminated by item B when (1) some n-gram of B occurs in it, and (2) the window of the
    document aligned with B by that n-gram (as many tokens as B, starting where B would start, cut at the
    document's ends) gives `difflib.SequenceMatcher(None, B, window).ratio() >= diff_ratio_threshold` on tokens.
    The ratio is 2 * matching tokens / (len(B) + len(window)): a copied question scores 1.0, lightly edited copies
    stay high, while a document that only shares one stock phrase with a longer question scores about
    2 * n / (2 * len(B)) and is kept. With the default 0.5, a document must carry, in order, at least half of B
    (a third when B runs past the document's start or end). Candidate items are tried in order of shared n-grams,
    and the first confirmed one is reported.
    """

    def __init__(
        self,
        benchmark_texts: Iterable[str],
        ngram: int = 10,
        cjk_ngram: int = 20,
        diff_ratio_threshold: float = 0.5,
    ) -> None:
        if ngram < 1:
            raise ValueError(f"ngram is {ngram}; set it to at least 1 word (10 is usual).")
        if cjk_ngram < 1:
            raise ValueError(f"cjk_ngram is {cjk_ngram}; set it to at least 1 character (20 is usual).")
        _check_threshold("diff_ratio_threshold", diff_ratio_threshold, " (0.5 is usual)")
        self.threshold = diff_ratio_threshold
        self._texts: list[str] = []
        self._tokens: list[list[str]] = []
        by_size: dict[int, list[int]] = defaultdict(list)
        for text in benchmark_texts:
            tokens = tokenize(text)
            if tokens:
                size = cjk_ngram if _is_cjk(tokens) else ngram
                by_size[min(size, len(tokens))].append(len(self._tokens))
            self._texts.append(text)
            self._tokens.append(tokens)
        self._indexes = {size: self._build_index(items, size) for size, items in sorted(by_size.items())}

    def _build_index(self, items: list[int], size: int) -> _NgramIndex:
        """The n-grams of `size` tokens of the given benchmark items, first occurrence per item, sorted by hash."""
        parts = []
        for owners, normalised in _chunks((item, " ".join(self._tokens[item])) for item in items):
            tokens, counts = _encode(normalised)
            hashes, text, positions = _windows(tokens, counts, size, whole_if_shorter=False)
            parts.append((hashes, np.asarray(owners, dtype=np.int64)[text], positions))
        hashes, owners, positions = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
        order = np.lexsort((positions, owners, hashes))
        hashes, owners, positions = hashes[order], owners[order], positions[order]
        first = np.ones(len(hashes), dtype=bool)
        first[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        return _NgramIndex(hashes[first], owners[first], positions[first])

    def matches(self, texts: Sequence[str]) -> list[BenchmarkMatch | None]:
        """For each text, the confirmed benchmark match, or None if the text is clean."""
        result: list[BenchmarkMatch | None] = [None] * len(texts)
        if not self._indexes:
            return result
        for rows, normalised in _chunks(_normalised_rows(texts, range(len(texts)))):
            tokens, counts = _encode(normalised)
            candidates: dict[int, Counter[tuple[int, int]]] = defaultdict(Counter)
            for size, index in self._indexes.items():
                hashes, text, positions = _windows(tokens, counts, size, whole_if_shorter=False)
                hits, first, entry_counts = index.lookup(hashes)
                entries = np.repeat(first - np.cumsum(entry_counts) + entry_counts, entry_counts)
                entries += np.arange(len(entries))
                hit_text = np.repeat(text[hits], entry_counts)
                hit_position = np.repeat(positions[hits], entry_counts)
                offsets = hit_position - index.positions[entries]
                for document, item, offset in zip(
                    hit_text.tolist(), index.items[entries].tolist(), offsets.tolist(), strict=True
                ):
                    candidates[document][item, offset] += 1
            for document, votes in candidates.items():
                result[rows[document]] = self._confirm(normalised[document].split(), votes)
        return result

    def contaminated(self, texts: Sequence[str]) -> list[str | None]:
        """For each text, a snippet of the benchmark item it contains, or None if it is clean."""
        return [None if match is None else match.snippet for match in self.matches(texts)]

    def _confirm(self, tokens: list[str], votes: Counter[tuple[int, int]]) -> BenchmarkMatch | None:
        """The first (item, alignment), by shared n-grams, whose aligned window reaches the ratio threshold."""
        for (item, offset), _ in votes.most_common():
            reference = self._tokens[item]
            window = tokens[max(offset, 0) : max(offset + len(reference), 0)]
            matcher = difflib.SequenceMatcher(None, reference, window, autojunk=False)
            if matcher.real_quick_ratio() < self.threshold or matcher.quick_ratio() < self.threshold:
                continue
            ratio = matcher.ratio()
            if ratio >= self.threshold:
                return BenchmarkMatch(index=item, ratio=ratio, snippet=_snippet(self._texts[item]))
        return None


@dataclass
class FilterReport:
    """What `filter_dataset` kept and dropped, and a few dropped rows per reason to look at."""

    kept: int
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    # Dropped rows: {"index": row in the input, "reason": a DROP_REASONS key, "matched": the index of the kept
    # row it duplicates, or a snippet of the benchmark item it contains}.
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, for logs and run reports."""
        return asdict(self)


def filter_dataset(
    dataset: Dataset,
    text_column: str = "text",
    *,
    dedup: bool = True,
    near_dedup_threshold: float | None = 0.8,
    benchmark_texts: Iterable[str] | None = None,
    decontamination_ngram: int = 10,
) -> tuple[Dataset, FilterReport, Dataset]:
    """Drop contaminated, exactly duplicated and near-duplicated rows of `dataset`.

    Returns (kept rows, report, dropped rows). Kept rows keep their order and columns. Dropped rows gain
    `drop_reason` (a `DROP_REASONS` key) and `drop_match` (int): for a duplicate, the index in `dataset` of the
    kept row it duplicates; for a contaminated row, the index of the benchmark item in `benchmark_texts`.

    Order of the steps: decontamination first (when `benchmark_texts` is given), then exact deduplication, then
    near deduplication at `near_dedup_threshold` (None skips it) on what is left, so every duplicate points at a
    row that was actually kept. `dedup=False` skips both deduplication steps.
    """
    if text_column not in dataset.column_names:
        raise ValueError(
            f"text_column {text_column!r} is not a column of the dataset; set it to one of "
            f"{', '.join(map(repr, dataset.column_names))}."
        )
    if near_dedup_threshold is not None:
        _check_threshold("near_dedup_threshold", near_dedup_threshold, ", or None to skip near deduplication")
    texts = list(dataset[text_column])
    missing = [index for index, text in enumerate(texts) if not isinstance(text, str)]
    if missing:
        raise ValueError(
            f"text_column {text_column!r} has {len(missing)} rows that are not strings (first: row {missing[0]}); "
            "fill or filter them before filtering."
        )
    reasons: list[str | None] = [None] * len(texts)
    matched: list[int] = [-1] * len(texts)
    snippets: dict[int, str] = {}
    if benchmark_texts is not None:
        decontaminator = Decontaminator(benchmark_texts, ngram=decontamination_ngram)
        for index, match in enumerate(decontaminator.matches(texts)):
            if match is not None:
                reasons[index], matched[index], snippets[index] = "contaminated", match.index, match.snippet
    if dedup:
        steps = [("exact_duplicate", _first_occurrence)]
        if near_dedup_threshold is not None:
            steps.append(("near_duplicate", lambda rows: near_duplicates(rows, threshold=near_dedup_threshold)[1]))
        for reason, find in steps:
            remaining = [index for index, current in enumerate(reasons) if current is None]
            originals = find([texts[index] for index in remaining])
            for position in np.flatnonzero(originals >= 0).tolist():
                index = remaining[position]
                reasons[index], matched[index] = reason, remaining[originals[position]]
    kept = [index for index, reason in enumerate(reasons) if reason is None]
    dropped = [index for index, reason in enumerate(reasons) if reason is not None]
    report = FilterReport(kept=len(kept))
    for index in dropped:
        reason = reasons[index]
        report.dropped[reason] += 1
        if report.dropped[reason] <= _EXAMPLES_PER_REASON:
            report.examples.append({"index": index, "reason": reason, "matched": snippets.get(index, matched[index])})
    dropped_rows = (
        dataset.select(dropped)
        .add_column("drop_reason", [reasons[index] for index in dropped], feature=Value("string"))
        .add_column("drop_match", [matched[index] for index in dropped], feature=Value("int64"))
    )
    return dataset.select(kept), report, dropped_rows

"""Throughput of `near_duplicates` (vectorised MinHash + LSH + verification) against a naive pure-Python MinHash.

The corpus: `--docs` synthetic documents of `--words` words drawn uniformly (seeded) from a vocabulary of 20,000
made-up words, so unrelated documents share no 5-gram; a `--dup-rate` share of them are copies of an earlier
document with 3 words changed (shingle Jaccard about 0.9), appended after the originals.

- ours: `near_duplicates(texts)` with its defaults (5-word shingles, 128 permutations, threshold 0.8, verified),
  timed end to end: tokenisation, signatures, banding, exact Jaccard checks, clusters. The MinHash signatures
  alone (`MinHasher().signatures(texts)`) are timed as well.
- naive: what a straightforward implementation does per document, in plain Python: the same tokens, each
  5-gram hashed with blake2b, then for each of the 128 permutations of `MinHasher` the minimum of
  (a * x + b) mod (2**61 - 1) over the shingles, with Python integers. Timed on the first `--naive-docs`
  documents only (it is slow), signatures only: no banding, which would only add to its time.

Documents per second are documents over wall-clock seconds of one run each, in the same process, after an
untimed warm-up on 100 documents; the speed-up compares signature throughput (ours' signatures alone against
naive). The last columns check the result: the share of planted copies dropped and mapped to their original, and
the number of other documents dropped (should be 0).

    python benchmarks/dedup.py [--docs 20000] [--words 300] [--naive-docs 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import string
import time

import numpy as np

from hf_cpt.synth.dedup import MERSENNE_PRIME, MinHasher, near_duplicates
from hf_cpt.utils.text import tokenize

VOCABULARY_SIZE = 20_000
EDITS_PER_COPY = 3


def make_corpus(docs: int, words: int, dup_rate: float, seed: int) -> tuple[list[str], dict[int, int]]:
    """Documents (the planted copies last), and planted copy -> its original."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    made_up = {"".join(rng.choice(letters, size=rng.integers(3, 10))) for _ in range(VOCABULARY_SIZE)}
    vocabulary = np.array(sorted(made_up))
    originals = docs - int(docs * dup_rate)
    texts = [" ".join(row) for row in vocabulary[rng.integers(0, len(vocabulary), size=(originals, words))]]
    planted = {}
    for row in range(originals, docs):
        planted[row] = int(rng.integers(0, originals))
        tokens = texts[planted[row]].split()
        for position in rng.choice(words, size=EDITS_PER_COPY, replace=False):
            tokens[position] = str(rng.choice(vocabulary))
        texts.append(" ".join(tokens))
    return texts, planted


def naive_signature(text: str, hasher: MinHasher) -> list[int]:
    """One document's MinHash signature in plain Python, as a per-document loop computes it."""
    tokens = tokenize(text)
    shingles = set()
    for i in range(max(len(tokens) - hasher.ngram + 1, 1)):
        digest = hashlib.blake2b(" ".join(tokens[i : i + hasher.ngram]).encode(), digest_size=8).digest()
        shingles.add(int.from_bytes(digest, "little") % MERSENNE_PRIME)
    return [min((a * x + b) % MERSENNE_PRIME for x in shingles) for a, b in zip(hasher.a, hasher.b, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--naive-docs", type=int, default=200)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts, planted = make_corpus(args.docs, args.words, args.dup_rate, args.seed)
    hasher = MinHasher()
    hasher.signatures(texts[:100])  # untimed warm-up: builds the normalisation table
    start = time.perf_counter()
    hasher.signatures(texts)
    signature_seconds = time.perf_counter() - start
    start = time.perf_counter()
    drop, kept_row = near_duplicates(texts)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts[: args.naive_docs]:
        naive_signature(text, hasher)
    naive_seconds = time.perf_counter() - start

    naive_speed = args.naive_docs / naive_seconds
    found = sum(kept_row[row] == original for row, original in planted.items()) / max(len(planted), 1)
    wrongly = int(drop.sum()) - sum(bool(drop[row]) for row in planted)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs (one used), Python {platform.python_version()}")
    print()
    print(
        "| docs | words/doc | ours: near_duplicates s | ours docs/s | ours signatures docs/s "
        "| naive signatures docs/s | speed-up (signatures) | planted copies dropped | others dropped |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.docs:,} | {args.words} | {ours_seconds:.2f} | {args.docs / ours_seconds:,.0f} "
        f"| {args.docs / signature_seconds:,.0f} | {naive_speed:,.1f} "
        f"| {args.docs / signature_seconds / naive_speed:,.0f}x | {found:.1%} | {wrongly} |"
    )


if __name__ == "__main__":
    main()

"""Near-duplicate detection: `near_duplicates` against datasketch's `MinHash` + `MinHashLSH`, the library users pick.

The corpus: `--docs` synthetic documents of `--words` words drawn uniformly (seeded) from a vocabulary of 20,000
made-up words, so unrelated documents share no 5-gram; a `--dup-rate` share of them are copies of an earlier
document with 3 words changed (shingle Jaccard about 0.9), appended after the originals.

Both sides use the same 5-word shingles of the same tokens, 128 permutations and threshold 0.8, on one core:

- ours: `near_duplicates(texts)` with its defaults (LSH banding, candidates verified by exact Jaccard, clusters
  by union-find, the lowest index of a cluster kept), timed end to end from the texts.
- datasketch: what its documentation shows, at its fastest: `MinHash.bulk` over each document's shingles (UTF-8),
  then in document order `MinHashLSH(threshold=0.8, num_perm=128).query` and, when nothing is found,
  `insert`; a document with a match is dropped as a duplicate of its lowest-index match. Timed end to end from
  the texts, tokenisation included.

Documents/s is documents over wall-clock seconds, after an untimed warm-up of both on 100 documents; with
`--repeats` the time is the median, each repeat running both sides in alternating order. Against the planted
copies: recall is the share of planted copies dropped as a duplicate of their own family (their original or
another copy of it), precision the share of dropped documents that were.

    python benchmarks/dedup.py [--docs 20000] [--words 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import string
import time
from collections.abc import Callable
from importlib.metadata import version

import numpy as np
from datasketch import MinHash, MinHashLSH

from hf_cpt.synth.dedup import near_duplicates
from hf_cpt.utils.text import tokenize

VOCABULARY_SIZE = 20_000
EDITS_PER_COPY = 3
NGRAM, NUM_PERM, THRESHOLD = 5, 128, 0.8


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


def ours(texts: list[str]) -> np.ndarray:
    """Each row's kept duplicate (-1 for rows kept)."""
    _, kept_row = near_duplicates(texts, threshold=THRESHOLD, ngram=NGRAM, num_perm=NUM_PERM)
    return kept_row


def datasketch_lsh(texts: list[str]) -> np.ndarray:
    """The same answer from datasketch: query each document, then index it if it matched nothing."""
    shingle_sets = []
    for text in texts:
        tokens = tokenize(text)
        grams = {" ".join(tokens[i : i + NGRAM]).encode() for i in range(max(len(tokens) - NGRAM + 1, 1))}
        shingle_sets.append(list(grams))
    signatures = MinHash.bulk(shingle_sets, num_perm=NUM_PERM)
    index = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    kept_row = np.full(len(texts), -1, dtype=np.int64)
    for row, signature in enumerate(signatures):
        matches = index.query(signature)
        if matches:
            kept_row[row] = min(matches)
        else:
            index.insert(row, signature)
    return kept_row


def quality(kept_row: np.ndarray, planted: dict[int, int]) -> tuple[float, float, int]:
    """Recall and precision against the planted copies, and the number of unrelated documents dropped."""
    dropped = np.flatnonzero(kept_row >= 0)
    # A copy's family is its original: a copy matched to another copy of the same original is found too.
    correct = sum(row in planted and planted.get(int(kept_row[row]), int(kept_row[row])) == planted[row]
                  for row in dropped)  # fmt: skip
    recall = correct / max(len(planted), 1)
    precision = correct / len(dropped) if len(dropped) else 1.0
    return recall, precision, int(sum(row not in planted for row in dropped))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--words", type=int, default=300)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts, planted = make_corpus(args.docs, args.words, args.dup_rate, args.seed)
    methods: dict[str, Callable[[list[str]], np.ndarray]] = {"near_duplicates": ours, "datasketch": datasketch_lsh}
    for method in methods.values():  # untimed warm-up: tables, imports
        method(texts[:100])
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    answers: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):
        for name in list(methods) if repeat % 2 == 0 else list(methods)[::-1]:
            start = time.perf_counter()
            answers[name] = methods[name](texts)
            seconds[name].append(time.perf_counter() - start)
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"datasketch {version('datasketch')}"
    )
    print(f"{args.docs:,} documents of {args.words} words, {len(planted):,} planted copies; {args.repeats} repeats")
    print()
    print("| method | seconds | docs/s | recall | precision | unrelated documents dropped |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in methods:
        median = statistics.median(seconds[name])
        recall, precision, unrelated = quality(answers[name], planted)
        print(f"| {name} | {median:.2f} | {args.docs / median:,.0f} | {recall:.4f} | {precision:.4f} | {unrelated} |")
    ratio = statistics.median(seconds["datasketch"]) / statistics.median(seconds["near_duplicates"])
    print(f"\nnear_duplicates is {ratio:.1f}x datasketch's speed")


if __name__ == "__main__":
    main()

"""Folding text for matching: one normal form, its tokens, and vectorised hashes of their n-grams.

Deduplication, decontamination and the matching of an LLM's answers against label names all compare texts that
differ in case, punctuation, spacing or Unicode form, so they all fold them the same way here:

- `normalize`: Unicode NFKC, casefolding, punctuation, symbols, separators and controls turned into spaces,
  format characters (zero-width spaces, soft hyphens) removed, a space on both sides of every CJK character
  (Han, Hiragana, Katakana, written without spaces between words), whitespace collapsed to single spaces.
- `tokenize`: the words of the normal form; a CJK character is a token of its own while a Latin word inside CJK
  text stays whole, so n-grams mean the same thing in Chinese texts as in English ones.
- `encode_tokens` / `ngram_hashes`: 64-bit hashes of tokens and of runs of n tokens, computed in numpy from the
  UTF-8 bytes, for millions of texts at a time (`chunk_texts` keeps the working arrays small).
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from hf_cpt.utils.hashing import span_hashes

# Han (unified, extensions, compatibility), Hiragana and Katakana: scripts written without spaces between words.
_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
_SPACE = ord(" ")  # the only separator left in normalized text
_CHUNK_CHARS = 1 << 19  # characters of normalized text hashed per vectorised step (about 80,000 words)


@functools.cache
def _strip_table() -> dict[int, str | None]:
    """`str.translate` table: punctuation, symbols, separators and controls become spaces; format characters go.

    Built once from the Unicode database rather than `string.punctuation`, so CJK and full-width punctuation
    (。，「」) separate tokens too. Every character `str.split` treats as whitespace is a separator (Z*) or a control
    (Cc), so after the table a plain space is the only separator left, and splitting the UTF-8 bytes on b" " (what
    `encode_tokens` does) gives exactly the tokens of `str.split()`. Format characters (zero-width spaces, soft
    hyphens) sit inside words, so they are deleted rather than spaced.
    """
    table: dict[int, str | None] = {}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category[0] in "PSZ" or category == "Cc":
            table[code] = " "
        elif category == "Cf":
            table[code] = None
    return table


def normalize(text: str) -> str:
    """The normal form of `text` that matching compares: its tokens (see the module docstring) joined by spaces."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_strip_table())
    if not text.isascii() and _CJK_CHAR.search(text) is not None:
        text = _CJK_CHAR.sub(r" \g<0> ", text)
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Matching tokens of `text`: words, and single characters for CJK scripts."""
    return normalize(text).split()


def is_cjk(tokens: Sequence[str]) -> bool:
    """Whether at least half the tokens are CJK characters, so n-grams should count characters, not words."""
    cjk = sum(1 for token in tokens if len(token) == 1 and _CJK_CHAR.match(token))
    return 2 * cjk >= len(tokens)


def encode_tokens(normalized: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the tokens of normalized texts (`normalize`), concatenated, and the number of tokens per text.

    Tokens are hashed in numpy from the UTF-8 bytes rather than one by one in Python, which costs about as much as
    all 128 MinHash permutations together: the texts are joined by spaces, a token is a maximal run of non-space
    bytes, and its hash is the polynomial hash of those bytes (`span_hashes`).
    """
    encoded = [text.encode() for text in normalized]
    blob = np.frombuffer(b" ".join(encoded), dtype=np.uint8)
    in_token = np.zeros(len(blob) + 2, dtype=np.int8)
    in_token[1:-1] = blob != _SPACE
    edges = np.diff(in_token)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    text_starts = np.cumsum([0] + [len(text) + 1 for text in encoded[:-1]])
    owners = np.searchsorted(text_starts, starts, side="right") - 1
    counts = np.bincount(owners, minlength=len(encoded))
    return span_hashes(blob.astype(np.uint64), starts, ends), counts


def ngram_hashes(
    tokens: np.ndarray, counts: np.ndarray, n: int, whole_if_shorter: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of every run of `n` consecutive tokens inside each text: (hash, text, start position).

    Args:
        tokens, counts: token hashes and tokens per text, from `encode_tokens`; runs never cross from one text
            into the next.
        n: tokens per run.
        whole_if_shorter: a non-empty text of fewer than `n` tokens yields one run of all its tokens (so a 3-word
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
    return span_hashes(tokens, starts, ends), text, position


def chunk_texts(rows: Iterable[tuple[int, str]]) -> Iterator[tuple[list[int], list[str]]]:
    """(row index, normalized text) pairs grouped into chunks of about 500,000 characters, in the order given.

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


def normalized_chunks(
    texts: Sequence[str], indices: Iterable[int] | None = None
) -> Iterator[tuple[list[int], list[str]]]:
    """`chunk_texts` of the given rows of `texts` (default: all), normalized lazily so one chunk at a time is held."""
    rows = range(len(texts)) if indices is None else indices
    return chunk_texts((index, normalize(texts[index])) for index in rows)

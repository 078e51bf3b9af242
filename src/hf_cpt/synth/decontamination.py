"""Benchmark decontamination: a shared n-gram makes a candidate, a difflib ratio over the aligned window confirms it.

A model asked for QA pairs sometimes writes out a benchmark question it memorised; training on it inflates the
evaluation hf-cpt reports. `Decontaminator` finds benchmark items inside documents, on the same normalized tokens
as deduplication (`hf_cpt.utils.text`); docs/synth.md explains the choices.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hf_cpt.synth.dedup import check_threshold
from hf_cpt.utils.text import chunk_texts, encode_tokens, is_cjk, ngram_hashes, normalized_chunks, tokenize

__all__ = ["BenchmarkMatch", "Decontaminator"]

_SNIPPET_CHARS = 200


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
        check_threshold("diff_ratio_threshold", diff_ratio_threshold, " (0.5 is usual)")
        self.threshold = diff_ratio_threshold
        self._texts: list[str] = []
        self._tokens: list[list[str]] = []
        by_size: dict[int, list[int]] = defaultdict(list)
        for text in benchmark_texts:
            tokens = tokenize(text)
            if tokens:
                size = cjk_ngram if is_cjk(tokens) else ngram
                by_size[min(size, len(tokens))].append(len(self._tokens))
            self._texts.append(text)
            self._tokens.append(tokens)
        self._indexes = {size: self._build_index(items, size) for size, items in sorted(by_size.items())}

    def _build_index(self, items: list[int], size: int) -> _NgramIndex:
        """The n-grams of `size` tokens of the given benchmark items, first occurrence per item, sorted by hash."""
        parts = []
        for owners, normalized in chunk_texts((item, " ".join(self._tokens[item])) for item in items):
            tokens, counts = encode_tokens(normalized)
            hashes, text, positions = ngram_hashes(tokens, counts, size, whole_if_shorter=False)
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
        for rows, normalized in normalized_chunks(texts):
            tokens, counts = encode_tokens(normalized)
            candidates: dict[int, Counter[tuple[int, int]]] = defaultdict(Counter)
            for size, index in self._indexes.items():
                hashes, text, positions = ngram_hashes(tokens, counts, size, whole_if_shorter=False)
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
                result[rows[document]] = self._confirm(normalized[document].split(), votes)
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

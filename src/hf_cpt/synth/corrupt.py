"""Accuracy-degrading transforms of synthetic data, to measure how its quality matters (§4.2, Appendix C).

`corrupt_dataset` corrupts a chosen fraction of the samples, `corrupt_text` one text, with three transforms:

- `numbers`: every number becomes a different random number with the same digit layout.
- `nouns`: the most frequent noun becomes a random co-hyponym from WordNet (chlorine -> oxygen), everywhere.
- `adjectives`: the most frequent adjective becomes its WordNet antonym (equal -> unequal), everywhere.

Why each transform works as it does (every number, direct antonyms only, part of speech from WordNet's sense
counts) is in docs/synth.md, "The corruption ablation".
"""

from __future__ import annotations

import functools
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from datasets import Dataset, List, Value

from hf_cpt.synth.wordnet import load_wordnet

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

logger = logging.getLogger(__name__)

TRANSFORMS = ("numbers", "nouns", "adjectives")

RandomSource = random.Random | np.random.Generator

EDIT_FEATURE = List(
    {"transform": Value("string"), "original": Value("string"), "replacement": Value("string"), "start": Value("int64")}
)

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Bounded by non-word characters, so the letters of "Cl2" or "2NaCl" are not words.
_WORD = re.compile(r"\b[A-Za-z]+\b")
_MIN_WORD_LENGTH = 3

# Function words WordNet still lists as content words ("will", "may", "can" are nouns there).
# fmt: off
_STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "cannot", "could",
    "did", "do", "does", "doing", "done", "down", "during", "each", "either", "else", "ever", "every", "few", "for",
    "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself",
    "his", "how", "however", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "least", "less", "let",
    "like", "many", "may", "me", "might", "more", "most", "much", "must", "my", "myself", "neither", "no", "nor",
    "not", "now", "of", "off", "often", "on", "once", "one", "only", "or", "other", "others", "ought", "our",
    "ours", "ourselves", "out", "over", "own", "per", "perhaps", "quite", "rather", "same", "shall", "she",
    "should", "since", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then",
    "there", "these", "they", "this", "those", "though", "through", "thus", "to", "too", "under", "until", "up",
    "upon", "us", "very", "was", "we", "were", "what", "when", "where", "whether", "which", "while", "who", "whom",
    "whose", "why", "will", "with", "within", "without", "would", "yet", "you", "your", "yours", "yourself",
    "yourselves"
})
# fmt: on

_T = TypeVar("_T")


@dataclass(frozen=True)
class Edit:
    """One replacement made in a text: `start` is where `original` begins in the text before corruption."""

    transform: str
    original: str
    replacement: str
    start: int


def _below(rng: RandomSource, bound: int) -> int:
    """A uniform integer in [0, bound), from either kind of generator the API accepts."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(bound))
    return rng.randrange(bound)


def _choice(rng: RandomSource, options: Sequence[_T]) -> _T:
    return options[_below(rng, len(options))]


def random_number_like(number: str, rng: RandomSource) -> str:
    """A different number with the same digit layout: as many digits before and after the point.

    The first digit stays non-zero when it was (so the magnitude holds), and "0.5" keeps its "0." prefix.
    """
    whole, point, fraction = number.partition(".")
    while True:
        if whole == "0" and point:
            new_whole = whole
        else:
            digits = [str(_below(rng, 10)) for _ in whole]
            if whole[0] != "0":
                digits[0] = str(1 + _below(rng, 9))
            new_whole = "".join(digits)
        new_fraction = "".join(str(_below(rng, 10)) for _ in fraction)
        candidate = new_whole + point + new_fraction
        if candidate != number:
            return candidate


def match_case(template: str, word: str) -> str:
    """`word` capitalised like `template`: all capitals, a leading capital, or as it is."""
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[0].isupper():
        return word[0].upper() + word[1:]
    return word


def pluralize(noun: str) -> str:
    """The regular English plural; irregular ones are rare among WordNet's single-word siblings."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _usable_lemma(name: str) -> bool:
    """One lower-case word: no multi-word lemmas ("noble_gas"), symbols ("Ne") or proper names."""
    return name.isalpha() and name.islower() and len(name) >= _MIN_WORD_LENGTH


class _Lexicon:
    """Part-of-speech decisions, siblings and antonyms from one WordNet reader, each looked up once."""

    def __init__(self, wordnet: WordNetCorpusReader) -> None:
        self.wordnet = wordnet
        # Per-instance caches: a sample repeats its words, and a dataset repeats its vocabulary.
        self.part_of_speech = functools.cache(self._part_of_speech)
        self.siblings = functools.cache(self._siblings)
        self.antonyms = functools.cache(self._antonyms)

    def _part_of_speech(self, word: str) -> tuple[str, str] | None:
        """("noun" or "adjective", base form) for a lower-case word that WordNet says is mostly that."""
        if len(word) < _MIN_WORD_LENGTH or word in _STOP_WORDS:
            return None
        counts: dict[str, int] = {}
        senses: dict[str, int] = {}
        bases: dict[str, str] = {}
        for pos in ("n", "v", "a", "r"):
            base = self.wordnet.morphy(word, pos)
            if base is None:
                continue
            bases[pos] = base
            lemmas = [
                lemma
                for synset in self.wordnet.synsets(base, pos)
                for lemma in synset.lemmas()
                if lemma.name().lower() == base
            ]
            counts[pos] = sum(lemma.count() for lemma in lemmas)
            senses[pos] = len(lemmas)
        scores = counts if any(counts.values()) else senses
        total = sum(scores.values())
        if "n" in scores and scores["n"] * 2 > total:
            return "noun", bases["n"]
        # Adjectives are corrupted in their base form only: "bigger" has no antonym of the same degree.
        if "a" in scores and scores["a"] * 2 > total and bases["a"] == word:
            return "adjective", word
        return None

    def _siblings(self, noun: str) -> tuple[str, ...]:
        """Single-word co-hyponyms of the noun's most common sense, sorted so a seed picks the same one."""
        synsets = self.wordnet.synsets(noun, "n")
        if not synsets:
            return ()
        sense = synsets[0]
        own = {lemma.name().lower() for lemma in sense.lemmas()}
        names = {
            lemma.name()
            for hypernym in sense.hypernyms() + sense.instance_hypernyms()
            for hyponym in hypernym.hyponyms() + hypernym.instance_hyponyms()
            if hyponym != sense
            for lemma in hyponym.lemmas()
        }
        return tuple(sorted(name for name in names if _usable_lemma(name) and name not in own))

    def _antonyms(self, adjective: str) -> tuple[str, ...]:
        """Single-word direct antonyms of the adjective over all its senses, sorted."""
        names = {
            antonym.name()
            for synset in self.wordnet.synsets(adjective, "a")
            for lemma in synset.lemmas()
            if lemma.name().lower() == adjective
            for antonym in lemma.antonyms()
        }
        return tuple(sorted(name for name in names if _usable_lemma(name)))


@functools.lru_cache(maxsize=4)
def _lexicon(wordnet: WordNetCorpusReader) -> _Lexicon:
    return _Lexicon(wordnet)


def _check_transforms(transforms: Sequence[str]) -> None:
    unknown = [name for name in transforms if name not in TRANSFORMS]
    if unknown:
        raise ValueError(f"Unknown transform {unknown[0]!r}; choose from {', '.join(TRANSFORMS)}.")


def _number_edits(text: str, rng: RandomSource) -> list[Edit]:
    return [
        Edit("numbers", match.group(), random_number_like(match.group(), rng), match.start())
        for match in _NUMBER.finditer(text)
    ]


def _word_edits(
    text: str, rng: RandomSource, lexicon: _Lexicon, pos: str, min_count: int, max_words: int | None
) -> list[Edit]:
    """Edits replacing every occurrence of the `max_words` most frequent words of part of speech `pos`."""
    occurrences: dict[str, list[re.Match[str]]] = {}
    for match in _WORD.finditer(text):
        analysis = lexicon.part_of_speech(match.group().lower())
        if analysis is not None and analysis[0] == pos:
            occurrences.setdefault(analysis[1], []).append(match)
    frequent = sorted(
        (base for base, matches in occurrences.items() if len(matches) >= min_count),
        key=lambda base: (-len(occurrences[base]), occurrences[base][0].start()),
    )
    alternatives = lexicon.siblings if pos == "noun" else lexicon.antonyms
    chosen = [base for base in frequent if alternatives(base)][:max_words]
    transform = "nouns" if pos == "noun" else "adjectives"
    edits = []
    for base in chosen:
        replacement = _choice(rng, alternatives(base))
        for match in occurrences[base]:
            surface = match.group()
            new = pluralize(replacement) if surface.lower() != base else replacement
            edits.append(Edit(transform, surface, match_case(surface, new), match.start()))
    return edits


def corrupt_text(
    text: str,
    rng: RandomSource,
    transforms: Sequence[str] = TRANSFORMS,
    wordnet: WordNetCorpusReader | None = None,
    min_count: int = 2,
    max_words: int | None = 1,
) -> tuple[str, list[Edit]]:
    """Apply the `transforms` of Appendix C to one text; return it and its edits, in text order.

    Args:
        text: the text to corrupt.
        rng: draws the replacements (`random.Random` or `numpy.random.Generator`).
        transforms: any of `numbers`, `nouns`, `adjectives`.
        wordnet: the WordNet reader, needed only for `nouns` and `adjectives`; default: `load_wordnet()`.
        min_count: occurrences in the text from which a noun or an adjective counts as frequent.
        max_words: how many distinct frequent nouns, and as many adjectives, are swapped, the most frequent first
            (ties to the earliest); None swaps every frequent one.

    Returns:
        The corrupted text and its edits; each edit is also logged at debug level.
    """
    _check_transforms(transforms)
    edits: list[Edit] = []
    if "numbers" in transforms:
        edits += _number_edits(text, rng)
    word_transforms = [name for name in ("nouns", "adjectives") if name in transforms]
    if word_transforms:
        lexicon = _lexicon(wordnet if wordnet is not None else load_wordnet())
        for name in word_transforms:
            pos = "noun" if name == "nouns" else "adjective"
            edits += _word_edits(text, rng, lexicon, pos, min_count, max_words)
    edits.sort(key=lambda edit: edit.start)
    pieces, position = [], 0
    for edit in edits:
        logger.debug("%s: %r -> %r at offset %d", edit.transform, edit.original, edit.replacement, edit.start)
        pieces += [text[position : edit.start], edit.replacement]
        position = edit.start + len(edit.original)
    pieces.append(text[position:])
    return "".join(pieces), edits


def _corrupt_batch(
    batch: dict[str, list],
    indices: list[int],
    *,
    chosen: frozenset[int],
    seed: int,
    text_column: str,
    transforms: tuple[str, ...],
    min_count: int,
    max_words: int | None,
    wordnet_root: str | Path | None,
) -> dict[str, list]:
    """`datasets.map` body: each chosen row gets its own generator, so the result ignores batching and num_proc."""
    needs_wordnet = any(index in chosen for index in indices) and bool({"nouns", "adjectives"} & set(transforms))
    wordnet = load_wordnet(wordnet_root) if needs_wordnet else None
    texts, flags, edit_lists = [], [], []
    for index, text in zip(indices, batch[text_column], strict=True):
        edits: list[Edit] = []
        if index in chosen and text is not None:
            rng = random.Random(f"{seed}:{index}")
            text, edits = corrupt_text(text, rng, transforms, wordnet, min_count, max_words)
        texts.append(text)
        flags.append(index in chosen)
        edit_lists.append([asdict(edit) for edit in edits])
    return {text_column: texts, "corrupted": flags, "corruption_edits": edit_lists}


def corrupt_dataset(
    dataset: Dataset,
    fraction: float,
    seed: int,
    text_column: str = "text",
    transforms: Sequence[str] = TRANSFORMS,
    num_proc: int | None = None,
    min_count: int = 2,
    max_words: int | None = 1,
    wordnet_root: str | Path | None = None,
) -> Dataset:
    """Corrupt exactly `round(fraction * len(dataset))` rows, chosen by `seed`, as the paper's corruption levels.

    Args:
        dataset: the samples.
        fraction: share of the rows to corrupt, in [0, 1].
        seed: chooses the rows and draws their edits; the same seed gives the same rows and edits whatever
            `num_proc`.
        text_column: the column with the text.
        transforms, min_count, max_words: as for `corrupt_text`.
        num_proc: processes for `datasets.map`.
        wordnet_root: passed to `load_wordnet`.

    Returns:
        `dataset` with `corrupted` (True for every chosen row) and `corruption_edits` (that row's edits as dicts
        with transform, original, replacement and start; empty for the others). A chosen row that admits no edit
        (no number, no frequent noun or adjective, or no text) stays chosen, with `corrupted` True and no edits,
        so the fraction counts the rows exposed to corruption and does not drift with how corruptible the texts
        happen to be. Other rows are returned unchanged.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}.")
    if text_column not in dataset.column_names:
        raise ValueError(
            f"The dataset has no column {text_column!r} (it has {', '.join(dataset.column_names)}); "
            "pass text_column= naming the column that holds the text."
        )
    transforms = tuple(transforms)
    _check_transforms(transforms)
    count = round(fraction * len(dataset))
    chosen = frozenset(random.Random(seed).sample(range(len(dataset)), count))
    if count and {"nouns", "adjectives"} & set(transforms):
        load_wordnet(wordnet_root)  # Fail before the workers start, and copy the database only once.
    logger.info(
        "Corrupting %d of %d samples (fraction %s, seed %d) with %s.",
        count,
        len(dataset),
        fraction,
        seed,
        ", ".join(transforms),
    )
    features = dataset.features.copy()
    features["corrupted"] = Value("bool")
    features["corruption_edits"] = EDIT_FEATURE
    return dataset.map(
        functools.partial(
            _corrupt_batch,
            chosen=chosen,
            seed=seed,
            text_column=text_column,
            transforms=transforms,
            min_count=min_count,
            max_words=max_words,
            wordnet_root=wordnet_root,
        ),
        batched=True,
        with_indices=True,
        features=features,
        num_proc=num_proc,
        desc="Corrupting synthetic data",
    )

"""The corruption transforms of Appendix C (§4.2) on the paper's own example, and corruption levels of a dataset.

These tests read the real WordNet 3.0 database (`scripts/install_wordnet.sh` installs it); without it, those that
need it are skipped, saying how to install it (a failure with `HF_CPT_REQUIRE_WORDNET=1`, as in CI).
"""

from __future__ import annotations

import logging
import random
import re
import sys

import numpy as np
import pytest
from conftest import wordnet_or_skip
from datasets import Dataset

from hf_cpt.synth.corrupt import corrupt_dataset, corrupt_text, random_number_like
from hf_cpt.synth.wordnet import LEXNAMES, install_wordnet_corpus, load_wordnet

# Appendix C, "Before Transformations".
PAPER_BEFORE = (
    "In the given chemical reaction, we have sodium (Na) reacting with chlorine (Cl2) to form sodium chloride "
    "(NaCl). To determine the number of atoms of chlorine before and after the reaction, we will first count the "
    "number of chlorine atoms... adjust the coefficients of the reactants to make the number of chlorine atoms "
    "equal before and after the reaction:2Na + Cl2 ==2NaCl."
)
FORMULA = re.compile(r"reaction:(\d+)Na \+ Cl(\d+) ==(\d+)NaCl\.$")


@pytest.fixture(scope="module")
def nltk_root(tmp_path_factory):
    return tmp_path_factory.mktemp("nltk_data")


@pytest.fixture(scope="module")
def wordnet(nltk_root):
    return wordnet_or_skip(nltk_root)


def co_hyponyms(wordnet, noun: str) -> set[str]:
    """Lemma names of every hyponym of every hypernym of the noun's senses."""
    return {
        lemma.name()
        for sense in wordnet.synsets(noun, "n")
        for hypernym in sense.hypernyms() + sense.instance_hypernyms()
        for hyponym in hypernym.hyponyms() + hypernym.instance_hyponyms()
        for lemma in hyponym.lemmas()
    }


def apply(text: str, edits) -> str:
    for edit in sorted(edits, key=lambda edit: -edit.start):
        assert text[edit.start : edit.start + len(edit.original)] == edit.original
        text = text[: edit.start] + edit.replacement + text[edit.start + len(edit.original) :]
    return text


def test_paper_example_replaces_the_numbers_of_the_formula(wordnet):
    corrupted, edits = corrupt_text(PAPER_BEFORE, random.Random(0), wordnet=wordnet)
    match = FORMULA.search(corrupted)
    assert match is not None
    assert all(number != "2" for number in match.groups())
    assert [edit.original for edit in edits if edit.transform == "numbers"] == ["2"] * 4


def test_paper_example_swaps_every_chlorine_for_one_sibling(wordnet):
    corrupted, edits = corrupt_text(PAPER_BEFORE, random.Random(0), wordnet=wordnet)
    noun_edits = [edit for edit in edits if edit.transform == "nouns"]
    assert [edit.original for edit in noun_edits] == ["chlorine"] * 4
    replacements = {edit.replacement for edit in noun_edits}
    assert len(replacements) == 1
    (replacement,) = replacements
    assert replacement in co_hyponyms(wordnet, "chlorine")
    assert "chlorine" not in corrupted
    assert corrupted.count(replacement) == 4
    # Only the most frequent noun changes, as in the paper: "atoms" (3 times) stays.
    assert corrupted.count("atoms") == 3


def test_frequent_adjective_becomes_its_antonym_everywhere(wordnet):
    text = "Make the two sides equal. Equal masses balance, so the scale shows EQUAL weights."
    corrupted, edits = corrupt_text(text, random.Random(0), transforms=("adjectives",), wordnet=wordnet)
    assert corrupted == "Make the two sides unequal. Unequal masses balance, so the scale shows UNEQUAL weights."
    assert [(edit.original, edit.replacement) for edit in edits] == [
        ("equal", "unequal"),
        ("Equal", "Unequal"),
        ("EQUAL", "UNEQUAL"),
    ]


def test_adjective_occurring_once_is_not_frequent(wordnet):
    corrupted, edits = corrupt_text(PAPER_BEFORE, random.Random(0), transforms=("adjectives",), wordnet=wordnet)
    assert corrupted == PAPER_BEFORE
    assert edits == []


def test_noun_swap_keeps_plural_and_capitalisation(wordnet):
    text = "Atoms bond. Each atom holds a nucleus, and the atoms share electrons."
    corrupted, edits = corrupt_text(text, random.Random(3), transforms=("nouns",), wordnet=wordnet)
    assert [edit.original for edit in edits] == ["Atoms", "atom", "atoms"]
    singular = edits[1].replacement
    assert singular in co_hyponyms(wordnet, "atom")
    plural = edits[2].replacement
    assert plural.startswith(singular[:-1]) and plural.endswith("s") and plural != singular
    assert edits[0].replacement == plural[0].upper() + plural[1:]
    assert corrupted == apply(text, edits)


def test_every_edit_is_returned_and_logged_with_original_and_replacement(wordnet, caplog):
    with caplog.at_level(logging.DEBUG, logger="hf_cpt.synth.corrupt"):
        corrupted, edits = corrupt_text(PAPER_BEFORE, random.Random(1), wordnet=wordnet)
    assert corrupted == apply(PAPER_BEFORE, edits)
    assert len(edits) == 8  # four numbers and four "chlorine"
    logged = [record.getMessage() for record in caplog.records]
    for edit in edits:
        assert any(repr(edit.original) in line and repr(edit.replacement) in line for line in logged)
    assert len(logged) == len(edits)


def test_same_generator_seed_gives_the_same_corruption(wordnet):
    first = corrupt_text(PAPER_BEFORE, np.random.default_rng(7), wordnet=wordnet)
    second = corrupt_text(PAPER_BEFORE, np.random.default_rng(7), wordnet=wordnet)
    assert first == second
    assert first[0] != PAPER_BEFORE


@pytest.mark.parametrize(
    ("number", "layout"),
    [("2", r"[1-9]"), ("250", r"[1-9]\d\d"), ("3.14", r"[1-9]\.\d\d"), ("0.5", r"0\.\d"), ("0", r"\d")],
)
def test_random_number_keeps_the_digit_layout_and_differs(number, layout):
    rng = random.Random(0)
    for _ in range(50):
        replacement = random_number_like(number, rng)
        assert re.fullmatch(layout, replacement)
        assert replacement != number


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="Unknown transform 'verbs'"):
        corrupt_text("text", random.Random(0), transforms=("verbs",))


def samples(count: int) -> Dataset:
    """Rows that all admit edits (a number and a frequent noun), so changed rows equal chosen rows."""
    texts = [f"Sample {i}: the chlorine atoms bond, and chlorine weighs {i + 3}.5 grams." for i in range(count)]
    return Dataset.from_dict({"id": list(range(count)), "text": texts})


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7])
def test_dataset_corrupts_the_requested_fraction(fraction, nltk_root, wordnet):
    dataset = samples(20)
    corrupted = corrupt_dataset(dataset, fraction, seed=0, wordnet_root=nltk_root)
    changed = sum(new != old for new, old in zip(corrupted["text"], dataset["text"], strict=True))
    assert abs(changed - fraction * 20) <= 1
    assert sum(corrupted["corrupted"]) == round(fraction * 20)
    for row in corrupted:
        assert bool(row["corruption_edits"]) == row["corrupted"]


def test_dataset_leaves_unchosen_rows_untouched(nltk_root, wordnet):
    dataset = samples(20)
    corrupted = corrupt_dataset(dataset, 0.3, seed=0, wordnet_root=nltk_root)
    for old, new in zip(dataset, corrupted, strict=True):
        if not new["corrupted"]:
            assert new["text"].encode() == old["text"].encode()
            assert new["id"] == old["id"]
            assert new["corruption_edits"] == []


def test_dataset_edits_describe_the_changes(nltk_root, wordnet):
    dataset = samples(20)
    corrupted = corrupt_dataset(dataset, 0.3, seed=0, wordnet_root=nltk_root)
    for old, new in zip(dataset, corrupted, strict=True):
        text = old["text"]
        for edit in sorted(new["corruption_edits"], key=lambda edit: -edit["start"]):
            assert text[edit["start"] : edit["start"] + len(edit["original"])] == edit["original"]
            text = text[: edit["start"]] + edit["replacement"] + text[edit["start"] + len(edit["original"]) :]
        assert text == new["text"]


def test_dataset_same_seed_same_output_other_seed_other_rows(nltk_root, wordnet):
    dataset = samples(20)
    first = corrupt_dataset(dataset, 0.3, seed=0, wordnet_root=nltk_root)
    again = corrupt_dataset(dataset, 0.3, seed=0, wordnet_root=nltk_root)
    other = corrupt_dataset(dataset, 0.3, seed=1, wordnet_root=nltk_root)
    assert first.to_list() == again.to_list()
    assert first["corrupted"] != other["corrupted"]


def test_dataset_result_does_not_depend_on_num_proc(nltk_root, wordnet):
    dataset = samples(20)
    serial = corrupt_dataset(dataset, 0.7, seed=0, wordnet_root=nltk_root)
    parallel = corrupt_dataset(dataset, 0.7, seed=0, wordnet_root=nltk_root, num_proc=2)
    assert serial.to_list() == parallel.to_list()


def test_chosen_row_without_possible_edit_still_counts_as_corrupted(nltk_root, wordnet):
    dataset = Dataset.from_dict({"text": ["Nothing here repeats or counts."]})
    corrupted = corrupt_dataset(dataset, 1.0, seed=0, wordnet_root=nltk_root)
    assert corrupted[0] == {"text": "Nothing here repeats or counts.", "corrupted": True, "corruption_edits": []}


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_fraction_outside_unit_interval_is_refused(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        corrupt_dataset(samples(4), fraction, seed=0)


def test_missing_text_column_is_refused():
    with pytest.raises(ValueError, match="no column 'content'.*text_column="):
        corrupt_dataset(samples(4), 0.5, seed=0, text_column="content")


def test_missing_wordnet_database_says_how_to_install_it(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("WORDNET_DIR", str(empty))
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base wordnet-sense-index"):
        load_wordnet(tmp_path / "fresh_root")


def test_numbers_alone_need_no_wordnet(tmp_path, monkeypatch):
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path))
    monkeypatch.setenv("HF_CPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NLTK_DATA", raising=False)
    corrupted, edits = corrupt_text("Heat 2 g to 350 K.", random.Random(0), transforms=("numbers",))
    assert [edit.original for edit in edits] == ["2", "350"]
    assert re.fullmatch(r"Heat [1-9] g to [1-9]\d\d K\.", corrupted)


def test_missing_nltk_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nltk", None)
    message = 'nltk is not installed; install it with `pip install "hf-cpt[synth]"`.'
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        load_wordnet(tmp_path)


def test_database_is_copied_once_with_lexnames(nltk_root, wordnet, tmp_path, monkeypatch):
    corpus = nltk_root / "corpora" / "wordnet"
    lexnames = (corpus / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45 == len(LEXNAMES)
    assert lexnames[0] == "00\tadj.all\t3" and lexnames[44] == "44\tadj.ppl\t3"
    assert wordnet.synset("chlorine.n.01").lexname() == "noun.substance"
    # A second use reads the copy, so the installed database is no longer needed, and the reader is reused.
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path))
    assert install_wordnet_corpus(nltk_root) == corpus.resolve()
    assert load_wordnet(nltk_root) is wordnet
    assert [path for path in corpus.parent.iterdir() if path.name != "wordnet"] == []


def test_loading_keeps_the_users_nltk_paths(nltk_root, wordnet, monkeypatch):
    import nltk

    own = str(nltk_root.parent / "users_own_nltk_data")
    monkeypatch.setattr(nltk.data, "path", [own])
    assert load_wordnet(nltk_root) is wordnet
    assert nltk.data.path == [own, str(nltk_root.resolve())]
    assert wordnet.synsets("oxygen", "n")

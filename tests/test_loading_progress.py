"""Loading a corpus shows one progress bar over its sources and one per source for tokenising its training
documents, never one per internal pass, and leaves `datasets`' progress setting as it found it."""

from __future__ import annotations

import datasets
import pytest
import tqdm.std
from conftest import write_corpus

from hf_cpt.data import load_corpus
from hf_cpt.data.packing import datasets_progress_bars

SOURCES = ["web-en", "book-en", "web-cn"]


@pytest.fixture
def shown_bars(monkeypatch) -> list[str]:
    """The titles of the progress bars created (and not disabled) while the test runs, in order."""
    titles: list[str] = []
    original_init = tqdm.std.tqdm.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if not self.disable:
            titles.append(self.desc)

    monkeypatch.setattr(tqdm.std.tqdm, "__init__", recording_init)
    return titles


@pytest.fixture
def fresh_corpus(tmp_path, monkeypatch) -> str:
    """A corpus nothing has loaded yet, in an empty `datasets` cache, so that every pass really runs."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    return str(write_corpus(tmp_path / "corpus"))


@pytest.fixture
def restore_progress_setting():
    shown = not datasets.are_progress_bars_disabled()
    yield
    (datasets.enable_progress_bars if shown else datasets.disable_progress_bars)()


def test_a_load_shows_a_bar_over_the_sources_and_one_per_tokenised_source(
    fresh_corpus, tokenizer, shown_bars, restore_progress_setting
):
    datasets.enable_progress_bars()
    corpus = load_corpus(fresh_corpus, SOURCES, tokenizer, max_length=32, topic_sources=["web-en", "web-cn"])
    # Without the hiding: 3 sources x 2 splits of split generation, tokenising and dropping, 4 topic filters
    # per split, 4 packing maps, and a cast and an index flattening per group and split.
    assert shown_bars == ["Loading corpus", "Tokenizing web-en", "Tokenizing book-en", "Tokenizing web-cn"]
    assert len(corpus.group_names) == 4
    assert not datasets.are_progress_bars_disabled()


def test_bars_turned_off_by_the_caller_stay_off(fresh_corpus, tokenizer, shown_bars, restore_progress_setting):
    datasets.disable_progress_bars()
    load_corpus(fresh_corpus, SOURCES, tokenizer, max_length=32, topic_sources=["web-en", "web-cn"])
    assert shown_bars == []
    assert datasets.are_progress_bars_disabled()


def test_group_column_is_a_class_label_of_the_group_names(corpus_path, tokenizer):
    corpus = load_corpus(corpus_path, SOURCES, tokenizer, max_length=32, topic_sources=["web-en", "web-cn"])
    for dataset in (corpus.train, corpus.validation):
        assert dataset.features["group"] == datasets.ClassLabel(names=corpus.group_names)


@pytest.mark.parametrize("shown_before", [True, False])
def test_hiding_restores_the_previous_setting_even_after_an_error(shown_before, restore_progress_setting):
    (datasets.enable_progress_bars if shown_before else datasets.disable_progress_bars)()
    with pytest.raises(RuntimeError), datasets_progress_bars(False) as yielded:
        assert yielded is shown_before
        assert datasets.are_progress_bars_disabled()
        raise RuntimeError
    assert datasets.are_progress_bars_disabled() is not shown_before

"""A run of several stages trains each block once: a later stage draws what earlier stages did not, first."""

import json
import logging

import numpy as np
import pytest
from conftest import RecordingTrainer, make_model, micro_config

from hf_cpt.data import load_corpus, source_of
from hf_cpt.mixture import load_drawn_blocks, plan_stage, stage_group_weights
from hf_cpt.trainer import DATA_RECIPE_NAME

MAX_LENGTH = 32
SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
STAGE1 = {"web-en": 0.5, "book-en": 0.2, "web-cn": 0.3}
STAGE2 = {"web-en": 0.4, "book-en": 0.2, "web-cn": 0.2, "synthesis-en": 0.2}


@pytest.fixture(scope="module")
def corpus(corpus_path, tokenizer):
    return load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])


def rows_of(corpus, seen: list[list[int]]) -> list[int]:
    """Dataset rows of the blocks a trainer saw, in order (every block of the test corpus is distinct)."""
    index = {tuple(block): row for row, block in enumerate(corpus.train["input_ids"])}
    assert len(index) == len(corpus.train)
    return [index[tuple(block)] for block in seen]


def train_stage(corpus, tokenizer, output, ratios, steps, exclude=None, resume=None, **overrides):
    sampler = plan_stage(corpus.train, ratios, MAX_LENGTH * 4 * steps, 4, seed=0, exclude=exclude)
    trainer = RecordingTrainer(
        model=make_model(len(tokenizer)),
        args=micro_config(output, **overrides),
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    return trainer


def test_a_later_stage_draws_only_blocks_the_earlier_stage_did_not_draw(tmp_path, tokenizer, corpus):
    first = train_stage(corpus, tokenizer, tmp_path / "stage1", STAGE1, steps=4)
    drawn_first = set(rows_of(corpus, first.seen))
    mask = load_drawn_blocks(tmp_path / "stage1", corpus.train)  # what the stage folder records
    assert set(np.flatnonzero(mask).tolist()) == drawn_first
    second = train_stage(corpus, tokenizer, tmp_path / "stage2", STAGE2, steps=3, exclude=mask)
    drawn_second = rows_of(corpus, second.seen)
    assert not drawn_first & set(drawn_second)
    assert len(set(drawn_second)) == len(drawn_second)  # no block twice within the stage either
    recipe = json.loads((tmp_path / "stage2" / DATA_RECIPE_NAME).read_text())
    groups = np.asarray(corpus.train["group"])
    names = corpus.group_names
    for source, entry in recipe["sources"].items():
        in_source = np.array([source_of(names[g]) == source for g in groups])
        assert entry["available_blocks"] == int((in_source & ~mask).sum())
        assert entry["drawn_blocks"] == sum(in_source[row] for row in drawn_second)
        assert entry["repeated_blocks"] == 0
    # The stage's own file holds both stages' blocks, for a third stage.
    assert set(np.flatnonzero(load_drawn_blocks(tmp_path / "stage2")).tolist()) == drawn_first | set(drawn_second)


def test_a_resume_in_the_middle_of_the_later_stage_continues_with_the_same_blocks(tmp_path, tokenizer, corpus):
    train_stage(corpus, tokenizer, tmp_path / "stage1", STAGE1, steps=4)
    mask = load_drawn_blocks(tmp_path / "stage1", corpus.train)
    full = train_stage(corpus, tokenizer, tmp_path / "full", STAGE2, 4, mask, save_strategy="steps", save_steps=2)
    resumed = train_stage(
        corpus, tokenizer, tmp_path / "resumed", STAGE2, 4, mask, resume=str(tmp_path / "full" / "checkpoint-2")
    )
    assert resumed.seen == full.seen[2 * 4 :]


def test_a_source_that_runs_out_starts_a_new_pass_with_a_warning_and_counts_its_repeats(
    tmp_path, tokenizer, corpus, caplog
):
    first = train_stage(corpus, tokenizer, tmp_path / "stage1", {"book-en": 1.0}, steps=2)
    mask = load_drawn_blocks(tmp_path / "stage1", corpus.train)
    book = np.array([names == "book-en" for names in np.asarray(corpus.group_names)[corpus.train["group"]]])
    unused = int((book & ~mask).sum())
    with caplog.at_level(logging.WARNING):
        second = train_stage(corpus, tokenizer, tmp_path / "stage2", {"book-en": 1.0}, steps=3, exclude=mask)
    assert "draws about 12 blocks of book-en but earlier stages left it" in caplog.text
    assert len(first.seen) == 8 and unused < 12
    recipe = json.loads((tmp_path / "stage2" / DATA_RECIPE_NAME).read_text())["sources"]["book-en"]
    assert recipe["available_blocks"] == unused
    assert recipe["repeated_blocks"] == 12 - unused
    assert not set(rows_of(corpus, second.seen[:unused])) & set(np.flatnonzero(mask).tolist())


def test_drawn_blocks_of_another_corpus_are_refused(tmp_path, tokenizer, corpus, corpus_path):
    train_stage(corpus, tokenizer, tmp_path / "stage1", STAGE1, steps=2)
    other = load_corpus(corpus_path, ["book-en"], tokenizer, MAX_LENGTH)
    with pytest.raises(ValueError, match="were recorded for another corpus"):
        load_drawn_blocks(tmp_path / "stage1", other.train)
    with pytest.raises(FileNotFoundError, match="give the folder of a finished stage"):
        load_drawn_blocks(tmp_path / "nowhere")


def test_a_source_of_the_mixture_absent_from_the_corpus_is_an_error():
    with pytest.raises(ValueError, match="Source 'code-en' of the mixture has no blocks in the corpus"):
        stage_group_weights({"web-en": 0.5, "code-en": 0.5}, {"web-en/A": 10, "book-en": 4})

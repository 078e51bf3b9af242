"""A run of several stages trains each block once: a later stage draws what earlier stages did not, first; a
finished stage is skipped and an unfinished one resumes."""

import json
import logging

import numpy as np
import pytest
import torch
from conftest import RecordingTrainer, make_model, micro_config
from safetensors.torch import load_file, save_file

from hf_cpt.data import load_corpus, source_of
from hf_cpt.mixture import load_drawn_blocks, plan_stage, stage_group_weights
from hf_cpt.modeling import load_causal_lm
from hf_cpt.run_config import StageConfig
from hf_cpt.stages import StageResult, run_stage
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


# A run of two stages as the recipe gives them: CPTConfig overrides beside name, num_tokens and mixture.
RUN_STAGES = [
    {"name": "adaptation", "num_tokens": MAX_LENGTH * 4 * 8, "warmup_tokens": MAX_LENGTH * 4 * 2, "mixture": STAGE1},
    {"name": "synthetic", "num_tokens": MAX_LENGTH * 4 * 4, "warmup_tokens": 0, "mixture": STAGE2},
]


def run_stages(output, model_path, corpus, tokenizer) -> tuple[torch.nn.Module, list[StageResult]]:
    """Each stage after the one before, on one model, as the recipe runs them."""
    model = load_causal_lm(model_path)
    config = micro_config(output, save_strategy="steps", save_steps=4)
    results = []
    for index, values in enumerate(RUN_STAGES):
        previous_dir = str(output / results[-1].name) if results else None
        stage = StageConfig.from_dict(values, index)
        results.append(run_stage(stage, model, tokenizer, corpus, config, previous_dir))
    return model, results


def test_a_finished_stage_is_skipped_and_an_unfinished_one_resumes(
    tmp_path, tiny_model_path, tokenizer, corpus, caplog
):
    first, results = run_stages(tmp_path, tiny_model_path, corpus, tokenizer)
    assert [result.recipe["global_step"] for result in results] == [8, 4]
    assert results[0].log_history and results[1].recipe["tokens_consumed"] == RUN_STAGES[1]["num_tokens"]
    # Pretend stage 2 was killed after its checkpoint at step 4 (of 4): drop its final model.
    for name in ("model.safetensors", "data_recipe.json", "trainer_state.json"):
        (tmp_path / "synthetic" / name).unlink()
    with caplog.at_level(logging.INFO, logger="hf_cpt.stages"):
        again, rerun = run_stages(tmp_path, tiny_model_path, corpus, tokenizer)
    assert "Stage adaptation is already finished" in caplog.text
    assert f"resuming from {tmp_path / 'synthetic' / 'checkpoint-4'}" in caplog.text
    assert rerun[0].recipe == results[0].recipe and rerun[0].log_history == results[0].log_history
    expected = first.state_dict()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    # The stage took the checkpoint's weights and had no step left to train: halve them, and the stage ends there.
    for name in ("model.safetensors", "data_recipe.json", "trainer_state.json"):
        (tmp_path / "synthetic" / name).unlink()
    checkpoint = tmp_path / "synthetic" / "checkpoint-4" / "model.safetensors"
    halved = {name: tensor / 2 for name, tensor in load_file(checkpoint).items()}
    save_file(halved, checkpoint, metadata={"format": "pt"})
    run_stages(tmp_path, tiny_model_path, corpus, tokenizer)
    for name, tensor in load_file(tmp_path / "synthetic" / "model.safetensors").items():
        assert torch.equal(tensor, halved[name]), name


def test_a_stage_with_zero_tokens_fails_before_training(tmp_path, tiny_model_path, tokenizer, corpus):
    stage = StageConfig.from_dict(dict(RUN_STAGES[0], num_tokens=0), 0)
    model = load_causal_lm(tiny_model_path)
    with pytest.raises(ValueError, match=r"stages\[0\] \(adaptation\).num_tokens is 0, less than one optimizer step"):
        run_stage(stage, model, tokenizer, corpus, micro_config(tmp_path))
    assert not (tmp_path / "adaptation").exists()


def test_benchmarks_of_the_same_model_are_read_back_and_of_changed_weights_measured_again(
    tmp_path, tokenizer, monkeypatch
):
    """A rerun (a run killed in stage 2, the CPU ablation's second arm) does not measure the model before CPT again;
    the same file with other weights, benchmarks or limit is measured afresh."""
    import hf_cpt.evaluation
    from hf_cpt.evaluation.runner import EvaluationResult
    from hf_cpt.stages import run_benchmarks

    calls = []

    def evaluate(model, benchmarks, **options):
        calls.append((list(benchmarks), options["limit"]))
        return EvaluationResult(scores={"bundled": 50.0 + len(calls)}, metrics={"bundled": {}})

    monkeypatch.setattr(hf_cpt.evaluation, "evaluate", evaluate)
    model = make_model(tokenizer.vocab_size)
    first = run_benchmarks(model, tokenizer, ["bundled"], tmp_path, "before", limit=4)
    again = run_benchmarks(model, tokenizer, ["bundled"], tmp_path, "before", limit=4)
    assert len(calls) == 1 and again["scores"] == first["scores"] == {"bundled": 51.0}
    assert json.loads((tmp_path / "evaluation_before.json").read_text())["scores"] == {"bundled": 51.0}
    run_benchmarks(model, tokenizer, ["bundled"], tmp_path, "before", limit=8)
    assert len(calls) == 2
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    changed = run_benchmarks(model, tokenizer, ["bundled"], tmp_path, "before", limit=8)
    assert len(calls) == 3 and changed["scores"] == {"bundled": 53.0}


def test_validation_perplexity_is_read_back_for_the_same_weights_and_measured_again_for_others(
    tmp_path, tokenizer, corpus, monkeypatch
):
    import hf_cpt.stages as stages

    measured = []
    original = stages.perplexity_by_group

    def counting(*args, **kwargs):
        measured.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(stages, "perplexity_by_group", counting)
    model, config, saved = make_model(len(tokenizer)), micro_config(tmp_path), tmp_path / "measured" / "before.json"
    first = stages.validation_perplexity(model, corpus, config, 4, 0, saved=saved)
    assert stages.validation_perplexity(model, corpus, config, 4, 0, saved=saved) == first
    assert len(measured) == 1 and json.loads(saved.read_text())["table"] == first
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    changed = stages.validation_perplexity(model, corpus, config, 4, 0, saved=saved)
    assert len(measured) == 2 and changed != first

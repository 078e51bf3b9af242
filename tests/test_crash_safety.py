"""A kill at any moment resumes, and a changed run is noticed: checkpoints complete or ignored, run fingerprints.

The subprocess tests run `workers/crash_train.py`, a micro stage that resumes from its newest checkpoint when run
again, as the recipe does; they kill it with a real SIGKILL.
"""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import RecordingTrainer, free_port, make_model, micro_config
from safetensors.torch import load_file

from hf_cpt.checkpoints import (
    FINGERPRINT_NAME,
    check_finished_stage,
    checkpoint_problems,
    read_fingerprint,
    resolve_checkpoint,
)
from hf_cpt.data import load_corpus
from hf_cpt.mixture import plan_stage

WORKER = Path(__file__).parent / "workers" / "crash_train.py"
MAX_LENGTH = 32
RATIOS = {"web-en": 0.6, "book-en": 0.2, "web-cn": 0.2}
OTHER_RATIOS = {"web-en": 0.4, "book-en": 0.4, "web-cn": 0.2}
BLOCKS = 24  # 6 steps of 4 blocks


def _worker(output: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(output)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-4000:]
    return stderr


def _same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_a_kill_during_a_checkpoint_write_is_resumed_by_the_same_command_to_the_same_weights(tmp_path):
    _finish(_worker(tmp_path / "uninterrupted"))
    crashed = tmp_path / "crashed"
    env = {"STALL_AT_STEP": "4"}
    process = _worker(crashed, env)
    marker = crashed / "stalled"
    while not marker.exists():  # the save of checkpoint-4 has written weights and optimizer, not its state
        assert process.poll() is None, process.stderr.read()[-4000:]
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert (crashed / "run" / ".tmp-checkpoints" / "checkpoint-4" / "model.safetensors").is_file()
    assert not (crashed / "run" / "checkpoint-4").exists()  # never in place half-written
    _finish(_worker(crashed, env))  # the very same command
    _same_weights(tmp_path / "uninterrupted" / "run", crashed / "run")
    ours, theirs = (
        json.loads((folder / "result.json").read_text()) for folder in (tmp_path / "uninterrupted", crashed)
    )
    assert ours["tokens_consumed"] == theirs["tokens_consumed"] == 32 * 32
    assert theirs["seen"] == ours["seen"][2 * 2 :]  # resumed after checkpoint-2
    assert not (crashed / "run" / ".tmp-checkpoints").exists()


def test_a_two_process_stage_resumed_on_one_process_continues_by_position_within_its_budget(tmp_path):
    port = str(free_port())
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", port]  # fmt: skip
    killed = subprocess.run(
        [*launcher, str(WORKER), str(tmp_path)],
        env={**os.environ, "KILL_AFTER_STEP": "4"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode != 0 and (tmp_path / "run" / "checkpoint-4").is_dir()
    assert read_fingerprint(tmp_path / "run" / "checkpoint-4")["trained_blocks"] == 4 * 4
    stderr = _finish(_worker(tmp_path))
    assert "world_size 2 -> 1" in stderr and "continues at global position 16" in stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 1
    # 4 steps of 4 blocks, then 8 steps of 2: exactly the 32 blocks of the budget, in the planned order.
    assert result["global_step"] == 4 + 8
    assert result["tokens_consumed"] == 32 * MAX_LENGTH
    assert result["seen"] == result["planned"][16:]
    recipe = json.loads((tmp_path / "run" / "data_recipe.json").read_text())
    assert recipe["tokens_consumed"] == 32 * MAX_LENGTH


# ---- in one process ----
@pytest.fixture(scope="module")
def corpus(corpus_path, tokenizer):
    return load_corpus(corpus_path, list(RATIOS), tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])


def _trainer(output_dir, tokenizer, corpus, ratios=RATIOS, model_seed=3, **overrides) -> RecordingTrainer:
    args = micro_config(output_dir, save_strategy="steps", save_steps=2, **overrides)
    return RecordingTrainer(
        model=make_model(len(tokenizer), seed=model_seed),
        args=args,
        train_dataset=corpus.train,
        train_sampler=plan_stage(corpus.train, ratios, MAX_LENGTH * BLOCKS, 4, seed=1),
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation if args.mixture_alpha is not None else None,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tokenizer, corpus):
    """An uninterrupted run of 6 steps with checkpoints 2, 4 and 6."""
    folder = tmp_path_factory.mktemp("finished")
    trainer = _trainer(folder, tokenizer, corpus)
    trainer.train()
    trainer.save_model()
    return folder, trainer


# The topic mixture, with rounds at steps 3 and 6.
MIXTURE = {"mixture_alpha": 0.5, "mixture_round_steps": 3}


@pytest.fixture(scope="module")
def finished_mixture_run(tmp_path_factory, tokenizer, corpus):
    """An uninterrupted run of 6 steps with the topic mixture and checkpoints 2, 4 and 6."""
    folder = tmp_path_factory.mktemp("finished-mixture")
    trainer = _trainer(folder, tokenizer, corpus, **MIXTURE)
    trainer.train()
    trainer.save_model()
    return folder, trainer


def _copy(run: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(run, target)
    return target


def test_truncated_weights_and_state_fall_back_to_the_previous_complete_checkpoint(
    tmp_path, tokenizer, corpus, finished_run, caplog
):
    folder, full = finished_run
    run = _copy(folder, tmp_path / "run")
    weights = run / "checkpoint-6" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    state = run / "checkpoint-4" / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    assert checkpoint_problems(run / "checkpoint-6") == [
        f"model.safetensors is truncated ({size // 2} of {size} bytes)"
    ]
    resumed = _trainer(run, tokenizer, corpus, model_seed=7)
    with caplog.at_level(logging.WARNING, logger="hf_cpt"):
        resumed.train(resume_from_checkpoint=str(run / "checkpoint-6"))
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "model.safetensors is truncated" in messages
    assert "trainer_state.json is truncated or not JSON" in messages
    assert f"Resuming from {run / 'checkpoint-2'}" in messages
    assert resumed.seen == full.seen[2 * 4 :]
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_with_no_complete_checkpoint_the_stage_starts_afresh_and_true_needs_a_checkpoint(tmp_path, caplog):
    broken = tmp_path / "checkpoint-2"
    broken.mkdir()
    with caplog.at_level(logging.WARNING, logger="hf_cpt"):
        assert resolve_checkpoint(True, str(tmp_path)) is None
    assert "trainer_state.json is missing; the model weights are missing" in caplog.text
    assert "training starts from the beginning" in caplog.text
    with pytest.raises(ValueError, match="holds no checkpoint-N folder; train without resume_from_checkpoint"):
        resolve_checkpoint(True, str(tmp_path / "empty"))


def test_a_resume_with_another_mixture_is_refused_naming_it_and_the_flag(tmp_path, tokenizer, corpus, finished_run):
    folder, _ = finished_run
    run = _copy(folder, tmp_path / "run")
    changed = _trainer(run, tokenizer, corpus, ratios=OTHER_RATIOS)
    expected = (
        r"The run changed since .*checkpoint-4 was written \(mixture \(book-en, web-en/Law and Policy, "
        r"web-en/Medicine and Health changed\)\); set resume_on_mismatch=True to resume anyway"
    )
    with pytest.raises(ValueError, match=expected):
        changed.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    reseeded = _trainer(run, tokenizer, corpus, seed=1)
    with pytest.raises(ValueError, match=r"seed 0 -> 1"):
        reseeded.train(resume_from_checkpoint=str(run / "checkpoint-4"))


def test_resume_on_mismatch_continues_by_position_within_the_budget(tmp_path, tokenizer, corpus, finished_run, caplog):
    folder, _ = finished_run
    run = _copy(folder, tmp_path / "run")
    changed = _trainer(run, tokenizer, corpus, ratios=OTHER_RATIOS, resume_on_mismatch=True)
    with caplog.at_level(logging.WARNING, logger="hf_cpt"):
        changed.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert "although the run changed (mixture" in caplog.text
    assert changed.state.global_step == 6
    assert sum(changed.tokens_consumed.values()) == BLOCKS * MAX_LENGTH
    assert changed.seen == [changed.train_dataset[i]["input_ids"] for i in changed.train_sampler.indices(16, 24)]


@pytest.mark.parametrize("rounds", [False, True], ids=["fixed mixture", "topic mixture"])
def test_an_edited_mixture_resumed_on_mismatch_applies_from_the_position_reached_as_the_recipe_records(
    rounds, request, tmp_path, tokenizer, corpus, caplog
):
    folder, full = request.getfixturevalue("finished_mixture_run" if rounds else "finished_run")
    run = _copy(folder, tmp_path / "run")
    trained = json.loads((run / "checkpoint-4" / "data_recipe.json").read_text())["weight_history"]
    changed = _trainer(
        run, tokenizer, corpus, ratios=OTHER_RATIOS, resume_on_mismatch=True, **(MIXTURE if rounds else {})
    )
    edited = changed.train_sampler.history[0][1]
    with caplog.at_level(logging.WARNING, logger="hf_cpt"):
        changed.train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert "the edited mixture applying from there on (the blocks before it keep the weights" in caplog.text
    # The 16 blocks trained before the checkpoint, as they were drawn; the edited mixture from there on.
    before = [entry for entry in trained if entry["position"] < 16]
    history = changed.data_recipe()["weight_history"]
    assert history[: len(before)] == before and before[0]["weights"] != edited
    assert history[len(before)] == {"position": 16, "weights": edited}
    assert changed.train_sampler.indices(0, 16).tolist() == full.train_sampler.indices(0, 16).tolist()
    assert changed.seen == [changed.train_dataset[i]["input_ids"] for i in changed.train_sampler.indices(16, 24)]
    drawn = changed.train_sampler.draws_per_topic(24)
    assert changed.tokens_consumed == {name: drawn.get(name, 0) * MAX_LENGTH for name in changed.group_names}
    if rounds:  # the round at step 6 re-weighted the edited mixture, not the weights it replaced
        last = changed.mixture_callback.rounds[-1]
        assert last["step"] == 6 and history[-1]["weights"] == last["proportions"]
        moved = last["factor"]  # the rule keeps the moved topics' total share
        share, norm = sum(edited[name] for name in moved), sum(edited[name] * moved[name] for name in moved)
        for name, weight in edited.items():
            expected = share * weight * moved[name] / norm if name in moved else weight
            assert last["proportions"][name] == pytest.approx(expected), name


def test_a_checkpoint_without_optimizer_state_resumes_with_a_warning(tmp_path, tokenizer, corpus, finished_run, caplog):
    folder, _ = finished_run
    run = _copy(folder, tmp_path / "run")
    (run / "checkpoint-4" / "optimizer.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="hf_cpt"):
        _trainer(run, tokenizer, corpus).train(resume_from_checkpoint=str(run / "checkpoint-4"))
    assert "optimizer.pt is missing, so training resumes with a fresh one" in caplog.text


def test_a_finished_stage_whose_config_changed_is_not_reused_silently(
    tmp_path, tokenizer, corpus, finished_run, caplog
):
    folder, full = finished_run
    assert (folder / FINGERPRINT_NAME).is_file()
    check_finished_stage(folder, full.run_fingerprint(), "stage1")  # unchanged: nothing to say
    changed = _trainer(tmp_path, tokenizer, corpus, ratios=OTHER_RATIOS).run_fingerprint()
    with pytest.raises(ValueError, match=r"Stage stage1 is finished in .* but its config changed since \(mixture "
                       r".*\); delete that folder"):  # fmt: skip
        check_finished_stage(folder, changed, "stage1")
    with caplog.at_level(logging.WARNING, logger="hf_cpt"):
        check_finished_stage(folder, changed, "stage1", allow_changes=True)
    assert "Reusing finished stage stage1" in caplog.text
    # Another world size or batch does not change what the finished stage trained on.
    check_finished_stage(folder, {**full.run_fingerprint(), "world_size": 8, "global_batch_size": 32}, "stage1")


def test_a_corpus_of_other_documents_is_noticed(tmp_path, tokenizer, corpus, finished_run):
    folder, full = finished_run
    other = corpus.train.map(lambda row: {"input_ids": [row["input_ids"][0]] + row["input_ids"][:-1]})
    fingerprint = {**full.run_fingerprint()}
    from hf_cpt.checkpoints import corpus_fingerprint

    fingerprint["corpus"] = corpus_fingerprint(other)
    with pytest.raises(ValueError, match=r"corpus \(other documents or groups\)"):
        check_finished_stage(folder, fingerprint, "stage1")

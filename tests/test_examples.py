"""The examples run at tiny scale: transformers' run_clm.py and run_clm_no_trainer.py adapted to hf-cpt, and the TRL
SFTTrainer example. Each must log its loss at every logging step and train on what the topic mixture drew."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_corpus

from hf_cpt import load_corpus, plan_stage

REPO = Path(__file__).resolve().parents[1]
MAX_LENGTH, BATCH, STEPS = 32, 4, 6
RATIOS = {"web-en": 0.4, "book-en": 0.2, "web-cn": 0.3, "synthesis-en": 0.1}
CHINESE = "web-cn/Philosophy"
COMMON = ["--topic_sources", "web-en", "web-cn", "--num_tokens", str(MAX_LENGTH * BATCH * STEPS)]
COMMON += ["--per_device_train_batch_size", str(BATCH), "--learning_rate", "3e-3", "--mixture_round_steps", "3"]


@pytest.fixture(scope="module")
def hub_layout_corpus(tmp_path_factory) -> Path:
    """The test corpus with its training files named as on the Hub: data/<source>/train-00000-of-00001.jsonl."""
    root = write_corpus(tmp_path_factory.mktemp("hub-corpus"))
    for train in (root / "data").glob("*/train.jsonl"):
        train.rename(train.with_name("train-00000-of-00001.jsonl"))
    return root


def run_example(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(REPO / "examples" / script), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def replayed_draws(corpus_root: Path, tokenizer, history) -> dict[str, int]:
    """Blocks per group that the stage's sampler draws in STEPS steps under the recorded weight changes."""
    corpus = load_corpus(str(corpus_root), RATIOS, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * BATCH * STEPS, BATCH)
    for position, weights in history[1:]:
        sampler.set_weights(weights, position)
    return {name: count for name, count in sampler.draws_per_topic(BATCH * STEPS).items() if count}


def assert_moved_by_rounds(history) -> None:
    assert len(history) == 3  # the initial weights and the rounds at steps 3 and 6
    assert history[1][1]["web-en/Law and Policy"] != pytest.approx(history[0][1]["web-en/Law and Policy"])
    for _, weights in history:  # the rule moves topics within web-en only: the source ratios hold
        assert weights["web-en/Law and Policy"] + weights["web-en/Medicine and Health"] == pytest.approx(0.4)


def test_run_clm_trains_with_the_topic_mixture_and_the_curriculum(
    tmp_path, hub_layout_corpus, tiny_model_path, tokenizer
):
    output = tmp_path / "run_clm"
    run_example(
        "run_clm.py", "--model_name_or_path", tiny_model_path, "--dataset_name", str(hub_layout_corpus),
        "--mixture", json.dumps(RATIOS), *COMMON, "--output_dir", str(output), "--do_train", "--max_length", "32",
        "--logging_steps", "2", "--mixture_alpha", "0.5", "--curriculum_order", "LH", "--curriculum_topics", "web-cn",
        "--curriculum_num_difficulty_groups", "4", "--report_to", "none", "--bf16", "false",
        "--activation_checkpointing", "false", "--warmup_steps", "0", "--save_strategy", "no",
    )  # fmt: skip
    logs = [
        entry for entry in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in entry
    ]
    assert [entry["step"] for entry in logs] == [2, 4, 6]
    for entry in logs:
        for key in ("loss", "grad_norm", "learning_rate", f"loss/{CHINESE}", f"curriculum/group/{CHINESE}"):
            assert key in entry, f"{key} missing at step {entry['step']}"
    assert [entry["mixture/round"] for entry in logs] == [0, 1, 2]
    recipe = json.loads((output / "data_recipe.json").read_text())
    history = [(entry["position"], entry["weights"]) for entry in recipe["weight_history"]]
    assert_moved_by_rounds(history)
    trained = {name: group["tokens_consumed"] // MAX_LENGTH for name, group in recipe["groups"].items()}
    assert trained == replayed_draws(hub_layout_corpus, tokenizer, history)


def test_run_clm_no_trainer_trains_with_the_topic_mixture_and_the_curriculum(
    tmp_path, hub_layout_corpus, tiny_model_path, tokenizer
):
    log = run_example(
        "run_clm_no_trainer.py", "--model_name_or_path", tiny_model_path, "--dataset_name", str(hub_layout_corpus),
        "--mixture", *(f"{source}={ratio}" for source, ratio in RATIOS.items()), *COMMON, "--block_size", "32",
        "--curriculum_sources", "web-cn", "--num_train_epochs", "1", "--seed", "0", "--output_dir", str(tmp_path),
    )  # fmt: skip
    assert [int(step) for step in re.findall(r"step (\d+): loss \d+\.\d+", log)] == list(range(1, STEPS + 1))
    drawn, history = re.search(r"mixture: drawn (\{.*?\}) history (\[.*\])", log).groups()
    history = ast.literal_eval(history)
    assert_moved_by_rounds(history)
    assert ast.literal_eval(drawn) == replayed_draws(hub_layout_corpus, tokenizer, history)


def test_sft_with_mixture_trains_trl_on_the_topic_mixture_and_the_curriculum(
    tmp_path, hub_layout_corpus, tiny_model_path, tokenizer
):
    run_example(
        "sft_with_mixture.py", "--model_name_or_path", tiny_model_path, "--dataset_path", str(hub_layout_corpus),
        "--mixture", json.dumps(RATIOS), *COMMON, "--curriculum_sources", "web-cn", "--max_length", "32",
        "--max_steps", str(STEPS), "--logging_steps", "2", "--output_dir", str(tmp_path), "--report_to", "none",
        "--bf16", "false", "--save_strategy", "no", "--use_cpu", "true",
    )  # fmt: skip
    logs = [
        entry for entry in json.loads((tmp_path / "trainer_state.json").read_text())["log_history"] if "loss" in entry
    ]
    assert [entry["step"] for entry in logs] == [2, 4, 6]
    for entry in logs:
        for key in ("loss", "grad_norm", "learning_rate", "num_tokens", f"curriculum/group/{CHINESE}"):
            assert key in entry, f"{key} missing at step {entry['step']}"
    assert [entry["mixture/round"] for entry in logs] == [0, 1, 2]
    record = json.loads((tmp_path / "mixture_draws.json").read_text())
    assert_moved_by_rounds(record["history"])
    assert record["draws"] == replayed_draws(hub_layout_corpus, tokenizer, record["history"])

"""A kill -9 at any moment of a stage, then the same command again, ends as an uninterrupted run ends.

Each test runs the recipe (`workers/kill_recipe.py`, two stages of a tiny model; the first with the topic mixture
and a re-scored perplexity curriculum), kills it with a real SIGKILL at one moment, runs the very same command
again, and compares everything the run leaves with an uninterrupted run's: every model's weights, bit for bit,
the data recipes, the blocks each stage drew, the topic mixture's rounds, the curriculum's progress, the
validation perplexity and the report.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

WORKER = Path(__file__).parent / "workers" / "kill_recipe.py"
MAX_LENGTH = 32
STAGES = [
    {
        "name": "adaptation",
        "num_tokens": MAX_LENGTH * 4 * 8,  # 8 steps of 4 blocks; checkpoints 2, 4, 6
        "warmup_tokens": MAX_LENGTH * 4 * 2,
        "mixture": {"web-cn": 0.2, "web-en": 0.6, "book-en": 0.2},
        "mixture_alpha": 0.5,
        "mixture_round_steps": 3,  # rounds at steps 3 and 6 (round 0 before training)
        "curriculum_order": "LH",
        "curriculum_topics": ["web-cn"],
        "curriculum_num_difficulty_groups": 3,
        "curriculum_rescore_steps": 5,  # a re-scoring at step 5
    },
    {
        "name": "synthetic",
        "num_tokens": MAX_LENGTH * 4 * 4,
        "warmup_tokens": 0,
        "mixture": {"web-cn": 0.1, "web-en": 0.5, "book-en": 0.2, "synthesis-en": 0.2},
    },
]
TRAINING = {
    "max_length": MAX_LENGTH,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "bf16": False,
    "use_cpu": True,
    "report_to": "none",
    "logging_steps": 2,
    "save_strategy": "steps",
    "save_steps": 2,
    "activation_checkpointing": False,
    "learning_rate": 1e-3,
    "eval_batch_size": 4,
}
# Files compared as JSON (minus what a clock writes) and as arrays, per folder of the run.
JSON_FILES = [
    "final_model/data_recipe.json",
    "adaptation/data_recipe.json",
    "synthetic/data_recipe.json",
    "adaptation/topic_mixture.json",
    "adaptation/curriculum.json",
    "validation_perplexity.json",
]
MODELS = ["final_model", "adaptation", "synthetic"]


def _config(root: Path, name: str, model: str, corpus: str) -> Path:
    path = root / f"{name}.yaml"
    values = {"model_name_or_path": model, "dataset_path": corpus, "output_dir": str(root / name), **TRAINING}
    path.write_text(yaml.safe_dump({**values, "stages": STAGES}))
    return path


def _run(config: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"HF_CPT_TEST_KILL_AT": kill_at} if kill_at else {})}
    return subprocess.run(
        [sys.executable, str(WORKER), str(config)], env=env, capture_output=True, text=True, timeout=900
    )


def _finished(config: Path, kill_at: str | None = None) -> str:
    result = _run(config, kill_at)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_path, corpus_path) -> Path:
    root = tmp_path_factory.mktemp("kill")
    config = _config(root, "uninterrupted", tiny_model_path, corpus_path)
    _finished(config)
    return root / "uninterrupted"


def assert_same_run(ours: Path, theirs: Path) -> None:
    """The two runs' weights are equal bit for bit, and their recipes, rounds, draws and report the same."""
    for folder in MODELS:
        first, second = load_file(ours / folder / "model.safetensors"), load_file(theirs / folder / "model.safetensors")
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name]), f"{folder}: {name}"
    for name in JSON_FILES:
        assert json.loads((ours / name).read_text()) == json.loads((theirs / name).read_text()), name
    for stage in ("adaptation", "synthetic"):
        with np.load(ours / stage / "drawn_blocks.npz") as a, np.load(theirs / stage / "drawn_blocks.npz") as b:
            assert a.files == b.files
            for key in a.files:
                assert np.array_equal(a[key], b[key]), f"{stage}: {key}"
    assert (ours / "report.md").read_text() == (theirs / "report.md").read_text()
    assert (ours / "final_model" / "README.md").read_text() == (theirs / "final_model" / "README.md").read_text()


@pytest.mark.parametrize(
    ("kill_at", "rerun_says"),
    [
        # stage 1, step 7: resumed from checkpoint-6 (mixture rounds, re-scoring and curriculum restored)
        ("step:7", "resuming from {run}/adaptation/checkpoint-6"),
        # stage 2, step 3: stage 1 reused as finished, stage 2 resumed from checkpoint-2
        ("step:11", "resuming from {run}/synthetic/checkpoint-2"),
        # the round at step 6, measuring: resumed from checkpoint-4, the round measured again
        ("mixture_eval:3", "resuming from {run}/adaptation/checkpoint-4"),
        # the second shard of the curriculum's first scoring: the first shard is kept, the rest scored
        ("scoring:2", "Perplexity: 1 of 4 shards already done in {run}/adaptation/curriculum_shards"),
        # the re-scoring at step 5: resumed from checkpoint-4, re-scored
        ("scoring:5", "resuming from {run}/adaptation/checkpoint-4"),
        # stage 1's finished model written, its data recipe not yet: resumed from its last checkpoint
        ("model_saved:1", "resuming from {run}/adaptation/checkpoint-8"),
        # the final model's weights written, its recipe and card not yet
        ("model_saved:3", "Stage synthetic is already finished"),
        # the report half-written: perplexity table and loss plot only
        ("report:1", "Stage synthetic is already finished"),
    ],
)
def test_a_kill_at_any_moment_is_resumed_by_the_same_command_to_the_same_run(
    kill_at, rerun_says, uninterrupted, tmp_path, tiny_model_path, corpus_path
):
    config = _config(tmp_path, "killed", tiny_model_path, corpus_path)
    killed = _run(config, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert Path(f"{config}.killed").is_file()
    run = tmp_path / "killed"
    if kill_at == "model_saved:3":  # never a final model in place without its recipe and card
        assert not (run / "final_model").exists()
    stderr = _finished(config, kill_at)  # the very same command
    assert rerun_says.format(run=run) in stderr
    assert_same_run(uninterrupted, run)

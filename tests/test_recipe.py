"""The two-stage recipe end to end on a tiny model and a local corpus laid out like the Hub dataset."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import free_port

from hf_cpt.topics import TAXONOMIES

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "llama3_syne.py"
MAX_LENGTH = 32


def load_recipe():
    spec = importlib.util.spec_from_file_location("llama3_syne", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


def write_config(path: Path, model: str, corpus: str, output: Path, stages: list) -> Path:
    config = {
        "model_name_or_path": model,
        "dataset_path": corpus,
        "output_dir": str(output),
        "max_length": MAX_LENGTH,
        "per_device_train_batch_size": 4,
        "bf16": False,
        "use_cpu": True,
        "report_to": "none",
        "logging_steps": 2,
        "save_strategy": "steps",
        "save_steps": 4,
        "activation_checkpointing": False,
        "learning_rate": 1e-3,
        "eval_batch_size": 4,
        "stages": stages,
    }
    path.write_text(yaml.safe_dump(config))
    return path


STAGES = [
    {
        "name": "adaptation",
        "num_tokens": MAX_LENGTH * 4 * 8,
        "warmup_tokens": MAX_LENGTH * 4 * 2,
        "mixture": {
            "chinese": {"weight": 2, "sources": {"web-cn": 1.0}},
            "english": {"weight": 8, "sources": {"web-en": 0.75, "book-en": 0.25}},
        },
    },
    {
        "name": "synthetic",
        "num_tokens": MAX_LENGTH * 4 * 4,
        "warmup_tokens": 0,
        "mixture": {"web-cn": 0.1, "web-en": 0.5, "book-en": 0.2, "synthesis-en": 0.2},
    },
]


def test_both_stages_run_and_write_report_plots_and_recipes(tmp_path, tiny_model_path, corpus_path):
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", tiny_model_path, corpus_path, output, STAGES)
    load_recipe().main(["--config", str(config)])
    report = (output / "report.md").read_text()
    for stage in ("adaptation", "synthetic"):
        assert (output / stage / "model.safetensors").is_file()
        assert (output / stage / "trainer_state.json").is_file()
        assert f"### {stage}" in report
    assert (output / "final_model" / "model.safetensors").is_file()
    assert (output / "training_loss.png").stat().st_size > 0
    assert (output / "validation_perplexity.png").stat().st_size > 0
    assert "| before | after adaptation | after synthetic |" in report
    assert "web-en/Law and Policy" in report
    recipes = json.loads((output / "final_model" / "data_recipe.json").read_text())
    # Tokens per source at the end of each stage: within one block of the target ratio.
    for stage, expected in (
        ("adaptation", {"web-cn": 0.2, "web-en": 0.6, "book-en": 0.2}),
        ("synthetic", {"web-cn": 0.1, "web-en": 0.5, "book-en": 0.2, "synthesis-en": 0.2}),
    ):
        recipe = recipes[stage]
        total = recipe["tokens_consumed"]
        assert total == STAGES[0 if stage == "adaptation" else 1]["num_tokens"]
        for source, ratio in expected.items():
            assert recipe["sources"][source]["target_ratio"] == pytest.approx(ratio)
            assert abs(recipe["sources"][source]["tokens_consumed"] - ratio * total) < MAX_LENGTH
    # Stage 2 drew no block stage 1 had drawn: each source had enough unused blocks.
    for source, entry in recipes["synthetic"]["sources"].items():
        assert entry["drawn_blocks"] <= entry["available_blocks"], source
        assert entry["repeated_blocks"] == 0, source
    adaptation = recipes["adaptation"]["sources"]
    assert recipes["synthetic"]["sources"]["web-en"]["available_blocks"] == (
        adaptation["web-en"]["available_blocks"] - adaptation["web-en"]["drawn_blocks"]
    )


def test_a_finished_stage_is_skipped_and_an_unfinished_one_resumes(tmp_path, tiny_model_path, corpus_path):
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", tiny_model_path, corpus_path, output, STAGES)
    recipe = load_recipe()
    recipe.main(["--config", str(config)])
    first = (output / "final_model" / "model.safetensors").read_bytes()
    # Pretend stage 2 was killed after its checkpoint at step 4 (of 4): drop its final model.
    for name in ("model.safetensors", "data_recipe.json", "trainer_state.json"):
        (output / "synthetic" / name).unlink()
    recipe.main(["--config", str(config)])
    assert (output / "final_model" / "model.safetensors").read_bytes() == first


def test_a_stage_with_zero_tokens_fails_before_training(tmp_path, tiny_model_path, corpus_path):
    stages = [dict(STAGES[0], num_tokens=0)]
    config = write_config(tmp_path / "config.yaml", tiny_model_path, corpus_path, tmp_path / "run", stages)
    with pytest.raises(ValueError, match=r"stages\[0\] \(adaptation\).num_tokens is 0, less than one optimizer step"):
        load_recipe().main(["--config", str(config)])


def test_two_processes_plan_the_same_stage_and_agree_on_per_topic_perplexity(tmp_path, tiny_model_path, corpus_path):
    """`accelerate launch` with two CPU processes (gloo): same block accounting and per-topic PPL as one process."""
    single = tmp_path / "single"
    load_recipe().main(
        ["--config", str(write_config(tmp_path / "single.yaml", tiny_model_path, corpus_path, single, STAGES))]
    )
    double = tmp_path / "double"
    config = write_config(tmp_path / "double.yaml", tiny_model_path, corpus_path, double, STAGES)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(RECIPE.parent / "accelerate_configs" / "two_process_cpu.yaml"),
        "--main_process_port",
        str(free_port()),
        str(RECIPE),
        "--config",
        str(config),
        "--per_device_train_batch_size",
        "2",
    ]
    result = subprocess.run(launch, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    one = json.loads((single / "final_model" / "data_recipe.json").read_text())
    two = json.loads((double / "final_model" / "data_recipe.json").read_text())
    for stage in ("adaptation", "synthetic"):
        assert (one[stage]["world_size"], two[stage]["world_size"]) == (1, 2)
        assert two[stage]["global_step"] == one[stage]["global_step"]
        assert {s: e["tokens_consumed"] for s, e in two[stage]["sources"].items()} == {
            s: e["tokens_consumed"] for s, e in one[stage]["sources"].items()
        }
    # Before training both score the same model: the NLL sums split across ranks add up exactly.
    before_one = json.loads((single / "validation_perplexity.json").read_text())["before"]
    before_two = json.loads((double / "validation_perplexity.json").read_text())["before"]
    assert before_two.keys() == before_one.keys()
    for group, entry in before_one.items():
        assert before_two[group]["tokens"] == entry["tokens"]
        assert before_two[group]["perplexity"] == pytest.approx(entry["perplexity"], rel=1e-5)


def test_synthesis_generates_pairs_that_join_the_synthetic_source_and_the_report(
    tmp_path, tiny_model_path, corpus_path, monkeypatch
):
    import chat_server
    from chat_server import BAD_REQUEST, ChatServer

    solution = ("Apply the law step by step, with units at every stage, and state the result. " * 3).strip()
    problem = "Find the value in case {}. Give it in SI units with two significant figures."
    monkeypatch.setattr(
        chat_server, "answer", lambda item: f"[Problem]\n{problem.format(item)}\n\n[Solution]\n{solution}"
    )
    snippets = tmp_path / "snippets.jsonl"
    snippets.write_text(
        "".join(json.dumps({"text": f"Notes on item {i}.", "discipline": "physics"}) + "\n" for i in range(4))
    )
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", tiny_model_path, corpus_path, output, STAGES[1:])
    server = ChatServer({3: [BAD_REQUEST]})  # item 3 is refused: recorded as failed, not fatal
    with server.running() as url:
        settings = {"backend": "openai", "model": "served", "base_url": url, "snippets": str(snippets)}
        load_recipe().main(["--config", str(config), "--synthesis", json.dumps({**settings, "max_new_tokens": 64})])
    report = (output / "report.md").read_text()
    assert "## Synthetic QA (§3.3)" in report
    assert "3 of 4 pairs accepted (75%) from `served`" in report and "failed requests: 1" in report
    assert "**Problem.** Find the value in case 0." in report
    pairs = json.loads((output / "synthetic_qa" / "report.json").read_text())
    assert (pairs["kept"], pairs["failed"]) == (3, 1)
    with pytest.raises(ValueError, match="synthesis has no key 'temperture'; use the keys"):
        load_recipe().main(["--config", str(config), "--synthesis", json.dumps({"temperture": 0.2})])


def test_benchmarks_run_before_and_after_and_the_report_compares_them(tmp_path, tiny_model_path, corpus_path):
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", tiny_model_path, corpus_path, output, STAGES[1:])
    load_recipe().main(["--config", str(config), "--eval_benchmarks", "bundled", "--eval_limit", "4"])
    before = json.loads((output / "evaluation_before.json").read_text())
    after = json.loads((output / "evaluation_after.json").read_text())
    assert set(before["scores"]) == set(after["scores"]) == {"bilingual_en", "bilingual_zh"}
    report = (output / "report.md").read_text()
    assert "## Benchmarks before and after CPT" in report
    row = next(line for line in report.splitlines() if line.startswith("| hf-cpt bilingual (en)"))
    change = after["scores"]["bilingual_en"] - before["scores"]["bilingual_en"]
    assert f"{before['scores']['bilingual_en']:.2f}" in row and f"{change:+.2f}" in row


def test_topic_classifiers_label_the_web_sources_and_stage_one_mixes_the_predicted_topics(
    tmp_path, tiny_model_path, corpus_path
):
    output = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", tiny_model_path, corpus_path, output, STAGES[:1])
    settings = {"epochs": 1, "max_length": 32, "test_size": 0.2, "train_documents": 20}
    load_recipe().main(["--config", str(config), "--topic_classifier", json.dumps(settings)])
    labels = output / "topic_labels"
    # Train documents per source, including the one under 20 tokens per topic that packing drops later.
    expected = {"web-en": ({"Law and Policy", "Medicine and Health"}, 26), "web-cn": ({"Philosophy"}, 11)}
    for source, (given, documents) in expected.items():
        metrics = json.loads((labels / "classifiers" / source / "metrics.json").read_text())
        assert metrics["num_train"] + metrics["num_heldout"] == min(20, documents)  # the sample to learn from
        predicted = load_dataset_file(labels / "data" / source / "train-00000-of-00001.parquet")
        assert len(predicted) == documents and "topic_probs" not in predicted.column_names
        assert set(predicted["topic"]) <= set(TAXONOMIES["en" if source == "web-en" else "cn"].topics)
        # The corpus was packed from the predictions: its web groups are the predicted topics.
        recipe = json.loads((output / "adaptation" / "data_recipe.json").read_text())
        groups = {name.split("/", 1)[1] for name in recipe["groups"] if name.startswith(f"{source}/")}
        assert groups <= set(predicted["topic"]) and (groups == given) == (set(predicted["topic"]) == given)
    report = (output / "report.md").read_text()
    assert "## Topic classifiers (§3.2.1)" in report and "| web-en | en | " in report


def load_dataset_file(path):
    from datasets import load_dataset

    return load_dataset("parquet", data_files=str(path), split="train")

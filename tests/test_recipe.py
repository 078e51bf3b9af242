"""The two-stage recipe on a tiny model and a local corpus laid out like the Hub dataset.

The script runs end to end once in one process and once in two; its parts (stages, relabelling, synthesis,
benchmarks, the report) are tested through the library functions it calls.
"""

import dataclasses
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import free_port
from transformers import AutoTokenizer

from hf_cpt import CPTConfig
from hf_cpt.data import load_corpus
from hf_cpt.modeling import load_causal_lm
from hf_cpt.reporting import write_run_report
from hf_cpt.run_config import RecipeArguments, SynthesisConfig, TopicClassifierConfig
from hf_cpt.stages import run_benchmarks, run_stage, validation_perplexity
from hf_cpt.synth import generate_for_recipe
from hf_cpt.topics import TAXONOMIES, relabel_sources

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "llama3_syne.py"
MAX_LENGTH = 32


TRAINING = {
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
}


def write_config(path: Path, model: str, corpus: str, output: Path, stages: list) -> Path:
    config = {
        "model_name_or_path": model,
        "dataset_path": corpus,
        "output_dir": str(output),
        **TRAINING,
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


def run_recipe(*argv: str) -> None:
    """The script as `python recipes/llama3_syne.py ARGV` runs it, in this process."""
    main = runpy.run_path(str(RECIPE))["main"]
    main(list(argv))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, tiny_model_path, corpus_path) -> Path:
    """The recipe end to end, both stages, in one process."""
    root = tmp_path_factory.mktemp("recipe")
    output = root / "single"
    run_recipe("--config", str(write_config(root / "single.yaml", tiny_model_path, corpus_path, output, STAGES)))
    return output


def test_both_stages_run_and_write_report_plots_and_recipes(single_run):
    output = single_run
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


def test_two_processes_plan_the_same_stage_and_agree_on_per_topic_perplexity(
    tmp_path, tiny_model_path, corpus_path, single_run
):
    """`accelerate launch` with two CPU processes (gloo): same block accounting and per-topic PPL as one process."""
    single = single_run
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


def train_and_report(output: Path, model_path: str, corpus_path: str, stages: list, **prepared) -> str:
    """Train `stages` and write the run report as the recipe does, with the `prepared` parts; report.md's text.

    `prepared` takes `extra_train` and `source_paths` (for the corpus), `benchmarks` (names, run before and after
    training) and `synthesis` and `classifiers` (for the report).
    """
    args = RecipeArguments(stages=stages)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    corpus = load_corpus(
        corpus_path,
        args.sources,
        tokenizer,
        MAX_LENGTH,
        extra_train=prepared.pop("extra_train", None),
        source_paths=prepared.pop("source_paths", None),
    )
    config = CPTConfig(output_dir=str(output), **TRAINING)
    model = load_causal_lm(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    names = prepared.pop("benchmarks", None)
    before = run_benchmarks(model, tokenizer, names, output, "before", batch_size=4, limit=4)
    ppl_tables = {"before": validation_perplexity(model, corpus, config, 4, pad_id)}
    results = []
    for stage in args.stages:
        previous_dir = str(output / results[-1].name) if results else None
        results.append(run_stage(stage, model, tokenizer, corpus, config, previous_dir))
        ppl_tables[f"after {stage.name}"] = validation_perplexity(model, corpus, config, 4, pad_id)
    after = run_benchmarks(model, tokenizer, names, output, "after", batch_size=4, limit=4)
    report = write_run_report(
        output,
        model_name=model_path,
        dataset_path=corpus_path,
        config=config,
        ppl_tables=ppl_tables,
        stages=results,
        benchmarks={"before": before, "after": after} if names else None,
        **prepared,
    )
    return report.read_text()


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
    server = ChatServer({3: [BAD_REQUEST]})  # item 3 is refused: recorded as failed, not fatal
    with server.running() as url:
        settings = SynthesisConfig(
            backend="openai", model="served", base_url=url, snippets=str(snippets), max_new_tokens=64
        )
        synthesis = generate_for_recipe(settings, tiny_model_path, output)
    pairs = json.loads((output / "synthetic_qa" / "report.json").read_text())
    assert (pairs["kept"], pairs["failed"]) == (3, 1)
    assert len(synthesis["pairs"]) == 3 and synthesis["sample"] == synthesis["pairs"][0]
    extra_train = {settings.source: synthesis["pairs"]}
    report = train_and_report(
        output, tiny_model_path, corpus_path, STAGES[1:], extra_train=extra_train, synthesis=synthesis
    )
    assert "## Synthetic QA (§3.3)" in report
    assert "3 of 4 pairs accepted (75%) from `served`" in report and "failed requests: 1" in report
    assert "**Problem.** Find the value in case 0." in report
    # The pairs joined the synthetic source the stage drew from.
    recipe = json.loads((output / "synthetic" / "data_recipe.json").read_text())["sources"]["synthesis-en"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    without = load_corpus(corpus_path, ["synthesis-en"], tokenizer, MAX_LENGTH)
    assert recipe["available_blocks"] > len(without.train)


def test_benchmarks_run_before_and_after_and_the_report_compares_them(tmp_path, tiny_model_path, corpus_path):
    output = tmp_path / "run"
    report = train_and_report(output, tiny_model_path, corpus_path, STAGES[1:], benchmarks=["bundled"])
    before = json.loads((output / "evaluation_before.json").read_text())
    after = json.loads((output / "evaluation_after.json").read_text())
    assert set(before["scores"]) == set(after["scores"]) == {"bilingual_en", "bilingual_zh"}
    assert "## Benchmarks before and after CPT" in report
    row = next(line for line in report.splitlines() if line.startswith("| hf-cpt bilingual (en)"))
    change = after["scores"]["bilingual_en"] - before["scores"]["bilingual_en"]
    assert f"{before['scores']['bilingual_en']:.2f}" in row and f"{change:+.2f}" in row


def test_topic_classifiers_label_the_web_sources_and_stage_one_mixes_the_predicted_topics(
    tmp_path, tiny_model_path, corpus_path
):
    output = tmp_path / "run"
    # The test corpus's web-cn has one topic: a classifier of one class is refused, naming it.
    both = TopicClassifierConfig(epochs=1, max_length=32, test_size=0.2, train_documents=20)
    with pytest.raises(ValueError, match=r"Column 'topic' holds one topic only \('Philosophy'\)"):
        relabel_sources(both, corpus_path, tmp_path / "both")
    settings = dataclasses.replace(both, taxonomies={"web-en": "en"})
    labels_dir, classifiers = relabel_sources(settings, corpus_path, output)
    assert set(classifiers) == {"web-en"}
    source_paths = dict.fromkeys(classifiers, labels_dir)
    report = train_and_report(
        output, tiny_model_path, corpus_path, STAGES[:1], source_paths=source_paths, classifiers=classifiers
    )
    labels = output / "topic_labels"
    assert Path(labels_dir) == labels
    # Train documents per source, including the one under 20 tokens per topic that packing drops later.
    expected = {"web-en": ({"Law and Policy", "Medicine and Health"}, 26)}
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
    assert "## Topic classifiers (§3.2.1)" in report and "| web-en | en | the given topics | " in report


def load_dataset_file(path):
    from datasets import load_dataset

    return load_dataset("parquet", data_files=str(path), split="train")


def test_the_recipe_script_prints_a_bad_config_as_one_sentence_and_exits_non_zero(tmp_path, tiny_model_path):
    """`python recipes/llama3_syne.py --config bad.yaml`: the sentence alone on stderr, exit status 1."""
    config = write_config(tmp_path / "bad.yaml", tiny_model_path, str(tmp_path), tmp_path / "run", STAGES)
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "learning_rate": 0.0}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("HF_CPT_DEBUG", None)
    result = subprocess.run(
        [sys.executable, str(RECIPE), "--config", str(config)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "llama3_syne: error: learning_rate is 0.0; set it to a positive number" in result.stderr

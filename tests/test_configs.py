"""The shipped configs parse as their launchers read them, and hold the paper's numbers."""

import glob
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from test_recipe import load_recipe
from trl import TrlParser

from hf_cpt import CPTConfig
from hf_cpt.data import flatten_mixture, resolve_mixture
from hf_cpt.evaluation import resolve_benchmarks

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def parse(name: str):
    recipe = load_recipe()
    return TrlParser((recipe.RecipeArguments, CPTConfig)).parse_args_and_config(
        ["--config", str(RECIPES / "configs" / name)]
    )


def test_full_reproduction_config_is_the_papers_run():
    recipe_args, config = parse("llama3_syne_8b.yaml")
    assert recipe_args.model_name_or_path == "meta-llama/Meta-Llama-3-8B"
    assert recipe_args.dataset_path == "survivi/Llama-3-SynE-Dataset"
    assert config.max_length == 8192 and config.bf16 and config.activation_checkpointing
    assert (config.learning_rate, config.warmup_start_lr) == (1e-5, 1e-7)
    assert (config.adam_beta1, config.adam_beta2, config.max_grad_norm) == (0.9, 0.95, 1.0)
    assert config.lr_scheduler_type == "warmup_stable_decay" and config.decay_ratio == 0.0
    stage1, stage2 = recipe_args.stages
    assert (stage1["num_tokens"], stage2["num_tokens"]) == (92_500_000_000, 7_500_000_000)
    assert stage1["warmup_tokens"] == 10_000_000_000 and stage2["warmup_tokens"] == 0
    # Stage 1: topic mixture every ~40B tokens, Chinese data low to high perplexity.
    assert stage1["mixture_round_tokens"] == 40_000_000_000 and stage1["mixture_alpha"] > 0
    assert stage1["curriculum_order"] == "LH"
    assert set(stage1["curriculum_groups"]) == {"web-cn", "encyclopedia-cn", "book-cn", "qa_forum-cn"}
    assert "curriculum_order" not in stage2 and "mixture_alpha" not in stage2
    synthetic = flatten_mixture(resolve_mixture(stage2["mixture"]))["synthesis-en"]
    assert synthetic == pytest.approx(0.2)
    # The paper's classifiers: TinyBERT for English, a tiny Chinese BERT for Chinese, on a labelled sample.
    assert recipe_args.topic_classifier["model"] == {
        "web-en": "huawei-noah/TinyBERT_General_4L_312D",
        "web-cn": "ckiplab/bert-tiny-chinese",
    }
    assert recipe_args.topic_classifier["train_documents"] > 0
    # Every benchmark named resolves (with the paper's shot counts) and none runs model-written code unasked.
    benchmarks = resolve_benchmarks(recipe_args.eval_benchmarks)
    assert {"mmlu", "ceval", "cmmlu", "scieval"} <= {b.name for b in benchmarks}
    assert not any(b.executes_code for b in benchmarks)


def test_tinyllama_config_is_the_papers_surrogate():
    recipe_args, config = parse("tinyllama.yaml")
    assert config.max_length == 2048 and config.learning_rate == 1e-4 and config.lr_scheduler_type == "constant"
    # §4.2 averages C-Eval, CMMLU, MMLU and SciEval, SciQ, ARC for the surrogate.
    names = {b.name for b in resolve_benchmarks(recipe_args.eval_benchmarks)}
    assert names == {"mmlu", "ceval", "cmmlu", "scieval", "sciq", "arc_easy", "arc_challenge"}


def test_embedded_default_is_small_enough_for_a_cpu():
    recipe_args, config = parse("llama3_syne_demo.yaml")
    assert recipe_args.model_name_or_path is None and recipe_args.dataset_path is None  # the embedded ones
    assert sum(stage["num_tokens"] for stage in recipe_args.stages) <= 100_000
    assert [stage["mixture"] for stage in recipe_args.stages] == ["llama3_syne_stage1", "llama3_syne_stage2"]
    # It writes synthetic QA with the embedded model before training and runs the bundled benchmark.
    assert recipe_args.synthesis["snippets_per_discipline"] * recipe_args.synthesis["samples_per_seed"] == 2
    assert recipe_args.eval_benchmarks == ["bundled"]
    # MiniLM (the default) for web-en; Chinese, which MiniLM reads as [UNK], gets the character n-grams.
    assert recipe_args.topic_classifier == {"model": {"web-cn": "char-ngrams"}}


@pytest.mark.parametrize(
    ("name", "distributed_type", "processes"),
    [
        ("single_process", "NO", 1),
        ("two_process_cpu", "MULTI_GPU", 2),
        ("multi_gpu", "MULTI_GPU", 8),
        ("deepspeed_zero2", "DEEPSPEED", 8),
        ("deepspeed_zero3", "DEEPSPEED", 8),
        ("fsdp", "FSDP", 8),
    ],
)
def test_accelerate_configs_load(name, distributed_type, processes):
    config = load_config_from_file(str(RECIPES / "accelerate_configs" / f"{name}.yaml"))
    assert (config.distributed_type.value, config.num_processes) == (distributed_type, processes)
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_every_accelerate_config_is_covered():
    shipped = {Path(p).stem for p in glob.glob(str(RECIPES / "accelerate_configs" / "*.yaml"))}
    assert shipped == {"single_process", "two_process_cpu", "multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp"}

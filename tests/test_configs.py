"""The shipped configs parse as their launchers read them and hold the paper's numbers; a bad config is one
sentence that names the field and the fix."""

import glob
import json
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from hf_cpt.data import flatten_mixture, resolve_mixture
from hf_cpt.evaluation import resolve_benchmarks
from hf_cpt.run_config import RecipeArguments, RecipeParser, StageConfig, SynthesisConfig, TopicClassifierConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def parse(name: str, *argv: str):
    return RecipeParser().parse_args_and_config(["--config", str(RECIPES / "configs" / name), *argv])


def test_full_reproduction_config_is_the_papers_run():
    recipe_args, config = parse("llama3_syne_8b.yaml")
    assert recipe_args.model_name_or_path == "meta-llama/Meta-Llama-3-8B"
    assert recipe_args.dataset_path == "survivi/Llama-3-SynE-Dataset"
    assert config.max_length == 8192 and config.bf16 and config.activation_checkpointing
    assert (config.learning_rate, config.warmup_start_lr) == (1e-5, 1e-7)
    assert (config.adam_beta1, config.adam_beta2, config.max_grad_norm) == (0.9, 0.95, 1.0)
    assert config.lr_scheduler_type == "warmup_stable_decay" and config.decay_ratio == 0.0
    stage1, stage2 = recipe_args.stages
    assert (stage1.num_tokens, stage2.num_tokens) == (92_500_000_000, 7_500_000_000)
    assert stage1.overrides["warmup_tokens"] == 10_000_000_000 and stage2.overrides["warmup_tokens"] == 0
    # Stage 1: topic mixture every ~40B tokens, Chinese data low to high perplexity.
    assert stage1.overrides["mixture_round_tokens"] == 40_000_000_000 and stage1.overrides["mixture_alpha"] > 0
    assert stage1.overrides["curriculum_order"] == "LH"
    assert set(stage1.overrides["curriculum_topics"]) == {"web-cn", "encyclopedia-cn", "book-cn", "qa_forum-cn"}
    assert "curriculum_order" not in stage2.overrides and "mixture_alpha" not in stage2.overrides
    synthetic = flatten_mixture(resolve_mixture(stage2.mixture))["synthesis-en"]
    assert synthetic == pytest.approx(0.2) and stage2.ratios["synthesis-en"] == synthetic
    # The paper's classifiers: TinyBERT for English, a tiny Chinese BERT for Chinese, on a labelled sample.
    assert recipe_args.topic_classifier.model == {
        "web-en": "huawei-noah/TinyBERT_General_4L_312D",
        "web-cn": "ckiplab/bert-tiny-chinese",
    }
    assert recipe_args.topic_classifier.train_documents > 0
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
    assert sum(stage.num_tokens for stage in recipe_args.stages) <= 100_000
    assert [stage.mixture for stage in recipe_args.stages] == ["llama3_syne_stage1", "llama3_syne_stage2"]
    # It writes synthetic QA with the embedded model before training and runs the bundled benchmark.
    assert recipe_args.synthesis.snippets_per_discipline * recipe_args.synthesis.samples_per_seed == 2
    assert recipe_args.eval_benchmarks == ["bundled"]
    # MiniLM (the default) for web-en; Chinese, which MiniLM reads as [UNK], gets the character n-grams.
    assert recipe_args.topic_classifier == TopicClassifierConfig(model={"web-cn": "lm-probe"})


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


DEMO = yaml.safe_load((RECIPES / "configs" / "llama3_syne_demo.yaml").read_text())


def parse_yaml(tmp_path, **changes):
    """The embedded default's config with `changes` (a value of None removes the key), parsed from YAML."""
    config = {**DEMO, "output_dir": str(tmp_path), "report_to": "none", **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({key: value for key, value in config.items() if value is not None}))
    return RecipeParser().parse_args_and_config(["--config", str(path)])


def stage(**changes):
    return {**DEMO["stages"][0], **changes}


def test_stage_overrides_reach_the_stage_training_config_only(tmp_path):
    recipe_args, config = parse_yaml(tmp_path)
    stage1, stage2 = recipe_args.stages
    first = stage1.training_args(config, str(tmp_path / stage1.name))
    assert (first.mixture_alpha, first.mixture_round_steps, first.curriculum_order) == (0.5, 8, "LH")
    assert first.warmup_tokens == 8192 and first.output_dir == str(tmp_path / stage1.name)
    second = stage2.training_args(config, str(tmp_path / stage2.name))
    assert (second.mixture_alpha, second.curriculum_order, second.warmup_tokens) == (None, None, 0)
    assert config.mixture_alpha is None and config.warmup_tokens is None  # the run's config is left as it was


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mixture_alfa": 0.5}, "The config file has no key 'mixture_alfa'; did you mean `mixture_alpha`?"),
        ({"stages": [stage(mixture_alfa=0.5)]}, r"stages\[0\] \(stage1_bilingual_adaptation\) has no key "),
        ({"stages": [stage(num_token=5)]}, "has no key 'num_token'; did you mean `num_tokens`?"),
        # The typo is named even when it leaves the stage without what it needs.
        ({"stages": [{"name": "a", "num_token": 5}]}, r"stages\[0\] \(a\) has no key 'num_token'; did you mean"),
        ({"topic_classifier": {"epoch": 1}}, "topic_classifier has no key 'epoch'; did you mean `epochs`?"),
        ({"synthesis": {"temperture": 0.2}}, "synthesis has no key 'temperture'; did you mean `temperature`?"),
    ],
)
def test_an_unknown_key_is_answered_with_the_nearest_field(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        parse_yaml(tmp_path, **changes)


def test_numbers_written_as_strings_are_converted_when_exact(tmp_path):
    # YAML reads 1e5 and 1e-4 (without a dot) as strings.
    stages = [stage(num_tokens="1e5", mixture_round_steps="8"), DEMO["stages"][1]]
    recipe_args, config = parse_yaml(tmp_path, stages=stages, learning_rate="1e-4", max_length="256")
    assert recipe_args.stages[0].num_tokens == 100_000 and recipe_args.stages[0].overrides["mixture_round_steps"] == 8
    assert config.learning_rate == 1e-4 and config.max_length == 256 and isinstance(config.max_length, int)
    synthesis = SynthesisConfig(max_new_tokens="384", temperature="0.5")
    assert (synthesis.max_new_tokens, synthesis.temperature) == (384, 0.5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_length": 32.5}, "max_length is 32.5; give a whole number"),
        ({"stages": [stage(num_tokens="lots")]}, r"stages\[0\] \(stage1_bilingual_adaptation\).num_tokens is 'lots'"),
        ({"stages": [stage(mixture_alpha="half")]}, r"\.mixture_alpha is 'half'; give a number"),
        ({"topic_classifier": {"epochs": 1.5}}, "topic_classifier.epochs is 1.5; give a whole number"),
        ({"stages": stage()}, "stages is .*, not a list; give a list of stages"),
        ({"stages": []}, "stages is empty; give at least one stage"),
        ({"stages": ["stage1"]}, r"stages\[0\] is 'stage1', not a mapping"),
        ({"topic_sources": "web-en"}, r"topic_sources is 'web-en', not a list; write it as a list, e.g. \['web-en'\]"),
        ({"stages": [stage(curriculum_topics="web-cn")]}, "curriculum_topics is 'web-cn', not a list"),
        ({"stages": [stage(), stage()]}, r"stages\[1\].name 'stage1_bilingual_adaptation' is taken"),
        ({"stages": [stage(mixture=None)]}, "has no mixture; give a preset"),
        (
            {"stages": [stage(), {**DEMO["stages"][1], "curriculum_order": "XY"}]},
            "curriculum_order 'XY' is not a known curriculum; use one of",
        ),
        ({"stages": [stage(output_dir="x")]}, "sets output_dir; a stage writes into output_dir/<name>"),
        (
            {"synthesis": {"source": "poetry-en"}},
            "synthesis.source is 'poetry-en', which no stage's mixture draws from",
        ),
        ({"synthesis": {"backend": "llama"}}, "synthesis.backend is 'llama'; set it to one of transformers"),
        ({"synthesis": {"top_p": 0}}, r"top_p is 0.0; set it to a value in \(0, 1\]"),
        ({"topic_classifier": {"model": {"web-de": "x"}}}, r"topic_classifier.model names \['web-de'\]"),
        ({"topic_classifier": "all"}, "topic_classifier is 'all', not a mapping of TopicClassifierConfig fields"),
        ({"stages": "stage1"}, "stages is 'stage1', not a list of stages"),
    ],
)
def test_a_value_of_the_wrong_type_or_shape_is_refused_with_its_field(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        parse_yaml(tmp_path, **changes)


def test_nested_configs_on_the_command_line_are_json_and_bad_json_names_the_flag(tmp_path):
    stages = [{"name": "only", "num_tokens": 4096, "mixture": {"web-en": 1.0}, "warmup_tokens": 0}]
    recipe_args, _ = parse("llama3_syne_demo.yaml", "--stages", json.dumps(stages), "--synthesis", "null")
    assert recipe_args.stages == [
        StageConfig(name="only", num_tokens=4096, mixture={"web-en": 1.0}, overrides={"warmup_tokens": 0})
    ]
    assert recipe_args.sources == ["web-en"] and recipe_args.synthesis is None
    recipe_args, _ = parse("llama3_syne_demo.yaml", "--topic_classifier", '{"epochs": 2}')
    assert recipe_args.topic_classifier == TopicClassifierConfig(epochs=2)
    for flag, value in (("--stages", "[{name: only}]"), ("--topic_classifier", "{'epochs': 2}"), ("--synthesis", "{")):
        with pytest.raises(
            ValueError, match=f"^{flag} is not valid JSON .*; give a .* in JSON, quoted for the shell.$"
        ):
            parse("llama3_syne_demo.yaml", flag, value)


def test_configs_built_in_python_are_checked_the_same_way():
    with pytest.raises(ValueError, match="stage only.num_tokens is 1.5; give a whole number"):
        StageConfig(name="only", num_tokens=1.5, mixture="llama3_syne_stage2")
    with pytest.raises(ValueError, match="stage only has no key 'mixture_alfa'; did you mean `mixture_alpha`?"):
        StageConfig(name="only", num_tokens=10, mixture="llama3_syne_stage2", overrides={"mixture_alfa": 1})
    with pytest.raises(ValueError, match="topic_sources is 'web-en', not a list"):
        RecipeArguments(stages=[StageConfig(name="only", mixture="llama3_syne_stage2")], topic_sources="web-en")

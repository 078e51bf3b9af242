"""Llama-3-SynE: two-stage continual pre-training (arXiv 2407.18743, §3).

Stage 1, bilingual adaptation: Chinese : English = 2 : 8, web text packed per topic, topic proportions
re-weighted every round from the change of per-topic validation perplexity (§3.2.1), Chinese data played
from low to high perplexity (§3.2.2).
Stage 2, synthetic enhancement: Chinese : English : synthetic = 1 : 7 : 2, random sampling; with
`synthesis` set, QA pairs written by an LLM from science snippets (§3.3) join the synthetic source first.

    python recipes/llama3_syne.py                      # embedded default: SmolLM2-135M, bundled corpus, CPU
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero2.yaml \\
        recipes/llama3_syne.py --config recipes/configs/llama3_syne_8b.yaml   # the paper's run

Any field of `RecipeArguments` or `CPTConfig` can be overridden on the command line
(`--max_steps 4`, `--output_dir runs/x`). Writes into `output_dir`: one folder per stage (checkpoints
and the stage's model, plus `topic_mixture.json`/`.png` for a stage with the topic mixture and
`curriculum.json` for one with a curriculum), `final_model/`,
`report.md`, `training_loss.png`, `validation_perplexity.png` and `.json`, and `synthetic_qa/` (the
generated pairs, their records, rejects, report and dataset card) when `synthesis` is set.
A stage whose folder already holds its finished model is skipped; an unfinished one resumes from its
last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import load_dataset
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.trainer_utils import get_last_checkpoint
from trl import TrlParser

from hf_cpt import CPTConfig, CPTTrainer
from hf_cpt.curriculum.callback import PROGRESS_NAME
from hf_cpt.data import (
    DEMO_CORPUS_PATH,
    TOPIC_SOURCES,
    demo_snippets_path,
    flatten_mixture,
    load_corpus,
    resolve_mixture,
)
from hf_cpt.data.sources import load_source
from hf_cpt.evaluation import forgetting_report
from hf_cpt.hub import model_card
from hf_cpt.mixture import load_drawn_blocks, plan_stage
from hf_cpt.mixture.callback import HISTORY_NAME
from hf_cpt.modeling import EMBEDDED_MODEL_ID, check_max_length, embedded_model_path, load_causal_lm
from hf_cpt.perplexity import perplexity_by_group
from hf_cpt.reporting import (
    classifier_section,
    curriculum_section,
    mixture_section,
    perplexity_section,
    plot_group_perplexity,
    plot_training_loss,
    synthesis_section,
    tokens_section,
)
from hf_cpt.synth import SamplingParams, SynthQAGenerator, load_backend
from hf_cpt.topics import SOURCE_TAXONOMIES, label_topics, train_topic_classifier
from hf_cpt.trainer import DATA_RECIPE_NAME

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "llama3_syne_demo.yaml"
logger = logging.getLogger("llama3_syne")


@dataclass
class RecipeArguments:
    """What to train and on which data; training options are `CPTConfig` fields."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to continue pre-training; default: the embedded SmolLM2-135M."}
    )
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id or local folder (data/<source>/...); default: bundled."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the document text."})
    topic_column: str = field(default="topic", metadata={"help": "Column holding the topic of web documents."})
    topic_sources: list[str] = field(
        default_factory=lambda: list(TOPIC_SOURCES), metadata={"help": "Sources packed per topic."}
    )
    min_doc_tokens: int = field(default=20, metadata={"help": "Drop documents shorter than this (paper: 20)."})
    # A list of mappings in YAML; on the command line, the same as a JSON string.
    stages: str | None = field(
        default=None,
        metadata={"help": "Stages: name, num_tokens, mixture (preset or mapping), and CPTConfig overrides."},
    )
    model_dtype: str = field(default="float32", metadata={"help": "dtype of the weights trained (mixed precision)."})
    eval_batch_size: int = field(default=8, metadata={"help": "Batch size of validation PPL and benchmarks."})
    num_proc: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})
    eval_benchmarks: list[str] | None = field(
        default=None,
        metadata={"help": "Benchmarks or suites run before and after CPT (lm-eval), e.g. bundled, scientific."},
    )
    eval_limit: int | None = field(default=None, metadata={"help": "Questions per benchmark (default: all)."})
    # A mapping in YAML; on the command line, the same as a JSON string.
    topic_classifier: str | None = field(
        default=None,
        metadata={"help": "Train topic classifiers and mix on predicted topics (§3.2.1); see CLASSIFIER_DEFAULTS."},
    )
    # A mapping in YAML; on the command line, the same as a JSON string.
    synthesis: str | None = field(
        default=None,
        metadata={"help": "Synthetic QA generated before training (§3.3); see SYNTHESIS_DEFAULTS for the keys."},
    )


# Keys of `topic_classifier`, with their defaults. `model`: one encoder for every source, or a mapping
# source -> encoder; null (or a source missing from the mapping) = the embedded all-MiniLM-L6-v2; `char-ngrams`
# = the hashed n-gram classifier, which has no epochs, learning rate, batch size or max_length to set.
# `train_documents`: labelled documents to learn from per source (the paper's small labelled sample; null = all).
CLASSIFIER_DEFAULTS: dict[str, Any] = {
    "model": None,
    "train_documents": None,
    "taxonomies": dict(SOURCE_TAXONOMIES),  # source -> taxonomy (en, cn or a YAML file)
    "test_size": 0.25,
    "epochs": 8,
    "learning_rate": 3e-4,
    "batch_size": 16,
    "max_length": 128,
}


def predict_topics(settings: dict[str, Any], recipe_args: RecipeArguments, output_dir: str) -> tuple[str, dict]:
    """Train a topic classifier per web source on its labelled documents and label the source with it (§3.2.1).

    The bundled documents carry topics, standing in for the LLM-labelled sample of the paper; the classifier
    learns them on a stratified split, and its predictions (not the given labels) become the topics the stage
    mixes. Returns the corpus folder of the relabelled sources and each classifier's held-out metrics.
    """
    unknown = sorted(set(settings) - set(CLASSIFIER_DEFAULTS))
    if unknown:
        raise ValueError(f"topic_classifier has no key {unknown[0]!r}; use the keys {sorted(CLASSIFIER_DEFAULTS)}.")
    options = {**CLASSIFIER_DEFAULTS, **settings}
    labels_dir = Path(output_dir) / "topic_labels"
    results = {}
    for source, taxonomy in options["taxonomies"].items():
        classifier_dir = labels_dir / "classifiers" / source
        documents = {
            split: load_source(recipe_args.dataset_path, source, split, recipe_args.text_column, required=required)
            for split, required in (("train", True), ("validation", False))
        }
        model = options["model"].get(source) if isinstance(options["model"], dict) else options["model"]
        labelled = documents["train"]
        if options["train_documents"]:
            labelled = labelled.shuffle(seed=0).select(range(min(options["train_documents"], len(labelled))))
        if not (classifier_dir / "metrics.json").is_file():  # a finished classifier is reused on a re-run
            train_topic_classifier(
                labelled, taxonomy, model, classifier_dir, text_column=recipe_args.text_column,
                label_column=recipe_args.topic_column, test_size=options["test_size"], epochs=options["epochs"],
                learning_rate=options["learning_rate"], batch_size=options["batch_size"],
                max_length=options["max_length"],
            )  # fmt: skip
        metrics = json.loads((classifier_dir / "metrics.json").read_text())
        agreement = {}
        for split, data in documents.items():
            if data is None:
                continue
            given = data[recipe_args.topic_column]
            predicted = label_topics(
                data.remove_columns(recipe_args.topic_column),
                str(classifier_dir),
                text_column=recipe_args.text_column,
                max_length=options["max_length"],
                output_dir=labels_dir / "shards" / source / split,
            ).remove_columns("topic_probs")
            if recipe_args.topic_column != "topic":
                predicted = predicted.rename_column("topic", recipe_args.topic_column)
            matches = zip(given, predicted[recipe_args.topic_column], strict=True)
            agreement[split] = sum(a == b for a, b in matches) / len(given)
            if PartialState().is_main_process:
                folder = labels_dir / "data" / source
                folder.mkdir(parents=True, exist_ok=True)
                predicted.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        PartialState().wait_for_everyone()
        results[source] = {"taxonomy": taxonomy, **metrics, "agreement": agreement}
    return str(labels_dir), results


# Keys of `synthesis`, with their defaults. `model: null` = the model being trained; `snippets: null` = the
# bundled science snippets.
SYNTHESIS_DEFAULTS: dict[str, Any] = {
    "source": "synthesis-en",  # the corpus source the accepted pairs join
    "snippets": None,
    "snippets_per_discipline": None,  # None = every snippet
    "samples_per_seed": 1,
    "backend": "transformers",
    "model": None,
    "base_url": "http://localhost:8000/v1",  # for backend openai
    "batch_size": 8,  # for backend transformers
    "max_new_tokens": 512,
    "temperature": 0.7,
    "top_p": 0.95,
}


def generate_synthetic_qa(
    settings: dict[str, Any], model_name_or_path: str | None, output_dir: str
) -> tuple[str, dict[str, Any]]:
    """Write QA pairs from the science snippets with an LLM (resuming any earlier run in the same folder).

    Returns the source they join and the generator's report, with the pairs under `pairs` and one under `sample`.
    """
    unknown = sorted(set(settings) - set(SYNTHESIS_DEFAULTS))
    if unknown:
        raise ValueError(f"synthesis has no key {unknown[0]!r}; use the keys {sorted(SYNTHESIS_DEFAULTS)}.")
    options = {**SYNTHESIS_DEFAULTS, **settings}
    snippets = load_dataset("json", data_files=options["snippets"] or demo_snippets_path(), split="train")
    if options["snippets_per_discipline"]:
        seen: dict[str, int] = {}
        chosen = []
        for index, discipline in enumerate(snippets["discipline"]):
            seen[discipline] = seen.get(discipline, 0) + 1
            if seen[discipline] <= options["snippets_per_discipline"]:
                chosen.append(index)
        snippets = snippets.select(chosen)
    backend_options = {
        "transformers": {"batch_size": options["batch_size"]},
        "openai": {"base_url": options["base_url"]},
    }.get(options["backend"], {})
    # No model named: the model being trained (None = the embedded default, which load_backend knows).
    backend = load_backend(options["backend"], options["model"] or model_name_or_path, **backend_options)
    generator = SynthQAGenerator(
        backend,
        Path(output_dir) / "synthetic_qa",
        sampling=SamplingParams(
            max_new_tokens=options["max_new_tokens"], temperature=options["temperature"], top_p=options["top_p"]
        ),
        samples_per_seed=options["samples_per_seed"],
    )
    pairs = generator.generate(snippets)
    report = {**generator.report, "pairs": pairs, "sample": pairs[0] if len(pairs) else None}
    del backend, generator  # free the generating model before training
    return options["source"], report


def validation_perplexity(model: torch.nn.Module, corpus, config: CPTConfig, batch_size: int, pad_id: int) -> dict:
    """Per-group validation perplexity, under the same bf16 autocast as training."""
    return perplexity_by_group(model, corpus.validation, corpus.group_names, batch_size, pad_id, bf16=config.bf16)


def run_benchmarks(model, tokenizer, recipe_args: RecipeArguments, output_dir: str, name: str) -> dict | None:
    """The chosen lm-eval benchmarks on the model as it is now (main process), saved as `evaluation_<name>.json`."""
    from hf_cpt.evaluation import evaluate

    if not recipe_args.eval_benchmarks or not PartialState().is_main_process:
        return None
    result = evaluate(
        model, recipe_args.eval_benchmarks, tokenizer=tokenizer, batch_size=recipe_args.eval_batch_size,
        limit=recipe_args.eval_limit,
    )  # fmt: skip
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, f"evaluation_{name}.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result.to_dict()


def mixture_rounds(stage_dir: str) -> list[dict]:
    """The topic mixture's rounds a stage wrote, or none."""
    path = Path(stage_dir, f"{HISTORY_NAME}.json")
    return json.loads(path.read_text())["rounds"] if path.is_file() else []


def curriculum_progress(stage_dir: str) -> dict | None:
    """The curriculum's progress a stage wrote, or None."""
    path = Path(stage_dir, PROGRESS_NAME)
    return json.loads(path.read_text()) if path.is_file() else None


def run_stage(
    index: int, stage: dict[str, Any], model, tokenizer, corpus, config: CPTConfig, previous_dir: str | None
) -> dict[str, Any]:
    """Plan, train (or resume, or skip when done) one stage; returns its log history and data recipe.

    A stage after the first draws the blocks that earlier stages drew (recorded in `previous_dir`) only once
    a source has no unused ones left, so each token is trained once across the run.
    """
    stage = dict(stage)
    name = stage.pop("name", f"stage{index + 1}")
    num_tokens = int(stage.pop("num_tokens", 0))
    ratios = flatten_mixture(
        resolve_mixture(stage.pop("mixture", None) or {}, f"stages[{index}].mixture"),
        f"stages[{index}].mixture",
    )
    stage_dir = os.path.join(config.output_dir, name)
    stage_config = dataclasses.replace(config, output_dir=stage_dir, **stage)
    global_batch = (
        stage_config.per_device_train_batch_size * stage_config.world_size * (stage_config.gradient_accumulation_steps)
    )
    sampler = plan_stage(
        corpus.train,
        ratios,
        num_tokens,
        global_batch,
        seed=stage_config.seed,
        stage=f"stages[{index}] ({name})",
        exclude=load_drawn_blocks(previous_dir, corpus.train) if previous_dir else None,
    )
    planned_steps = len(sampler) // global_batch
    if stage_config.max_steps <= 0 or stage_config.max_steps > planned_steps:
        stage_config.max_steps = planned_steps
    if os.path.isfile(os.path.join(stage_dir, DATA_RECIPE_NAME)):
        logger.info("Stage %s is already finished in %s; skipping it (delete the folder to retrain).", name, stage_dir)
        model.load_state_dict(AutoModelForCausalLM.from_pretrained(stage_dir, dtype=model.dtype).state_dict())
        state = json.loads(Path(stage_dir, "trainer_state.json").read_text())
        return {
            "name": name,
            "log_history": state["log_history"],
            "recipe": json.loads(Path(stage_dir, DATA_RECIPE_NAME).read_text()),
            "mixture": mixture_rounds(stage_dir),
            "curriculum": curriculum_progress(stage_dir),
        }
    trainer = CPTTrainer(
        model=model,
        args=stage_config,
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation if stage_config.mixture_alpha is not None else None,
    )
    last = get_last_checkpoint(stage_dir) if os.path.isdir(stage_dir) else None
    logger.info(
        "Stage %s: %d blocks (%d tokens) in %d steps%s.",
        name,
        len(sampler),
        len(sampler) * config.max_length,
        stage_config.max_steps,
        f", resuming from {last}" if last else "",
    )
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model()
    trainer.save_state()
    return {
        "name": name,
        "log_history": trainer.state.log_history,
        "recipe": trainer.data_recipe(),
        "mixture": mixture_rounds(stage_dir),
        "curriculum": curriculum_progress(stage_dir),
    }


def write_report(
    output_dir: str,
    recipe_args: RecipeArguments,
    config: CPTConfig,
    model_name: str,
    ppl_tables: dict,
    stages: list[dict],
    synthesis: dict[str, Any] | None = None,
    benchmarks: dict[str, dict] | None = None,
    classifiers: dict[str, dict] | None = None,
) -> None:
    output = Path(output_dir)
    (output / "validation_perplexity.json").write_text(json.dumps(ppl_tables, indent=2, ensure_ascii=False))
    plot_training_loss({stage["name"]: stage["log_history"] for stage in stages}, output / "training_loss.png")
    plot_group_perplexity(ppl_tables, output / "validation_perplexity.png")
    lines = [
        "# Llama-3-SynE continual pre-training report",
        "",
        f"- model: `{model_name}`",
        f"- data: `{recipe_args.dataset_path}`",
        f"- block length: {config.max_length} tokens; peak lr {config.learning_rate}, "
        f"warm-up from {config.warmup_start_lr}; bf16: {config.bf16}",
        "",
        "## Validation perplexity",
        "",
        perplexity_section(ppl_tables),
        "",
        "![validation perplexity](validation_perplexity.png)",
        "",
        "## Tokens consumed per source against the target ratio",
    ]

    for stage in stages:
        recipe = stage["recipe"]
        lines += [
            "",
            f"### {stage['name']} ({recipe['tokens_consumed']:,} tokens, {recipe['global_step']} steps)",
            "",
            tokens_section(recipe),
        ]
    for stage in stages:
        if stage["mixture"]:
            lines += [
                "",
                f"## Topic mixture: {stage['name']}",
                "",
                mixture_section(stage["mixture"]),
                "",
                f"![topic mixture]({stage['name']}/{HISTORY_NAME}.png)",
            ]
        if stage["curriculum"]:
            lines += ["", f"## Perplexity curriculum: {stage['name']}", "", curriculum_section(stage["curriculum"])]
    if classifiers:
        lines += ["", "## Topic classifiers (§3.2.1)", "", classifier_section(classifiers)]
    if synthesis is not None:
        lines += ["", "## Synthetic QA (§3.3)", "", synthesis_section(synthesis, synthesis["sample"])]
    if benchmarks:
        table = forgetting_report(benchmarks["before"], benchmarks["after"])
        lines += ["", "## Benchmarks before and after CPT", "", table]
    lines += ["", "## Training loss", "", "![training loss](training_loss.png)", ""]
    (output / "report.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", str(DEFAULT_CONFIG), *argv]
    recipe_args, config = TrlParser((RecipeArguments, CPTConfig)).parse_args_and_config(argv)
    state = PartialState(cpu=config.use_cpu)
    logging.basicConfig(
        level=logging.INFO if state.is_main_process else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    if isinstance(recipe_args.stages, str):
        recipe_args.stages = json.loads(recipe_args.stages)
    if isinstance(recipe_args.synthesis, str):
        recipe_args.synthesis = json.loads(recipe_args.synthesis)
    if isinstance(recipe_args.topic_classifier, str):
        recipe_args.topic_classifier = json.loads(recipe_args.topic_classifier)
    if not recipe_args.stages:
        raise ValueError("stages is empty; give at least one stage with name, num_tokens and mixture.")
    model_path = recipe_args.model_name_or_path or str(embedded_model_path())
    recipe_args.dataset_path = recipe_args.dataset_path or DEMO_CORPUS_PATH
    check_max_length(AutoConfig.from_pretrained(model_path), config.max_length)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    sources = list(
        dict.fromkeys(
            source
            for i, stage in enumerate(recipe_args.stages)
            for source in flatten_mixture(
                resolve_mixture(stage.get("mixture") or {}, f"stages[{i}].mixture"), f"stages[{i}].mixture"
            )
        )
    )
    synthesis, extra_train = None, None
    if recipe_args.synthesis:
        # Generated before training, by every process for its share of the snippets; resumes in the same folder.
        source, synthesis = generate_synthetic_qa(
            recipe_args.synthesis, recipe_args.model_name_or_path, config.output_dir
        )
        if source not in sources:
            raise ValueError(
                f"synthesis.source is {source!r}, which no stage's mixture draws from; name a source of the "
                f"mixtures ({', '.join(sources)})."
            )
        extra_train = {source: synthesis["pairs"]}
    classifiers, source_paths = None, None
    if recipe_args.topic_classifier is not None:
        labels_dir, classifiers = predict_topics(recipe_args.topic_classifier, recipe_args, config.output_dir)
        source_paths = dict.fromkeys(classifiers, labels_dir)
    with state.main_process_first():
        corpus = load_corpus(
            recipe_args.dataset_path,
            sources,
            tokenizer,
            config.max_length,
            recipe_args.text_column,
            recipe_args.topic_column,
            recipe_args.topic_sources,
            recipe_args.min_doc_tokens,
            recipe_args.num_proc,
            extra_train=extra_train,
            source_paths=source_paths,
        )
    model = load_causal_lm(model_path, config.attn_implementation, dtype=getattr(torch, recipe_args.model_dtype))
    model.to(state.device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    ppl_tables = {}
    if corpus.validation is not None:
        ppl_tables["before"] = validation_perplexity(model, corpus, config, recipe_args.eval_batch_size, pad_id)
    before = run_benchmarks(model, tokenizer, recipe_args, config.output_dir, "before")
    stages = []
    for index, stage in enumerate(recipe_args.stages):
        previous_dir = os.path.join(config.output_dir, stages[-1]["name"]) if stages else None
        stages.append(run_stage(index, stage, model, tokenizer, corpus, config, previous_dir))
        if corpus.validation is not None:
            ppl_tables[f"after {stages[-1]['name']}"] = validation_perplexity(
                model, corpus, config, recipe_args.eval_batch_size, pad_id
            )
    after = run_benchmarks(model, tokenizer, recipe_args, config.output_dir, "after")
    if state.is_main_process:
        final_dir = os.path.join(config.output_dir, "final_model")
        model.save_pretrained(final_dir)
        tokenizer.save_pretrained(final_dir)
        recipe = {stage["name"]: stage["recipe"] for stage in stages}
        Path(final_dir, DATA_RECIPE_NAME).write_text(json.dumps(recipe, indent=2, ensure_ascii=False))
        benchmarks = {"before": before, "after": after} if before is not None else None
        card = model_card(
            base_model=recipe_args.model_name_or_path or EMBEDDED_MODEL_ID,
            recipe=recipe,
            evaluation=benchmarks,
            mixture={stage["name"]: stage["mixture"] for stage in stages},
            curriculum={stage["name"]: stage["curriculum"] for stage in stages},
        )
        Path(final_dir, "README.md").write_text(card, encoding="utf-8")  # `hf-cpt push` uploads it with the model
        model_name = recipe_args.model_name_or_path or EMBEDDED_MODEL_ID
        write_report(
            config.output_dir, recipe_args, config, model_name, ppl_tables, stages, synthesis, benchmarks, classifiers
        )
        logger.info("Report: %s", os.path.join(config.output_dir, "report.md"))
    state.wait_for_everyone()


if __name__ == "__main__":
    main()

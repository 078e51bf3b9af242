"""Llama-3-SynE: two-stage continual pre-training (arXiv 2407.18743, §3).

Stage 1, bilingual adaptation: Chinese : English = 2 : 8, web text packed per topic, topic proportions
re-weighted every round from the change of per-topic validation perplexity (§3.2.1), Chinese data played
from low to high perplexity (§3.2.2).
Stage 2, synthetic enhancement: Chinese : English : synthetic = 1 : 7 : 2, random sampling; with
`synthesis` set, QA pairs written by an LLM from science snippets (§3.3) join the synthetic source first.

    python recipes/llama3_syne.py                      # embedded default: SmolLM2-135M, bundled corpus, CPU
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero2.yaml \\
        recipes/llama3_syne.py --config recipes/configs/llama3_syne_8b.yaml   # the paper's run

Any field of `RecipeArguments` or `CPTConfig` (in `hf_cpt.run_config` and `hf_cpt.config`) can be overridden
on the command line (`--max_steps 4`, `--output_dir runs/x`; `--stages`, `--topic_classifier`, `--synthesis`
and `--source_options` take JSON). A config file may extend another (`base_config:`); the ablations of §4.2
are under `configs/ablations/` (docs/ablations.md). Writes into `output_dir`: one folder per stage
(checkpoints and the stage's model, plus `topic_mixture.json`/`.png` for a stage with the topic mixture and
`curriculum.json` for one with a curriculum), `final_model/`, `report.md`, `training_loss.png`,
`validation_perplexity.png` and `.json`, `validation_held_out.json` (the documents held out as validation of
sources that have no validation split, `validation_documents` per source and topic), `topic_labels/` (the LLM's
annotations where a web source has no topics, the classifiers and the relabelled web sources) when
`topic_classifier` is set, `synthetic_qa/` (the generated pairs, their records, rejects, report and dataset
card) when `synthesis` is set, and `derived_sources/` (the sources `source_options` reads from elsewhere, maps,
filters or corrupts). A stage whose folder already holds its finished model is skipped; an unfinished one
resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hf_cpt.config import CPTConfig
from hf_cpt.data import DEMO_CORPUS_PATH, Corpus, load_corpus
from hf_cpt.derived_sources import derive_sources
from hf_cpt.hub import model_card
from hf_cpt.modeling import EMBEDDED_MODEL_ID, check_max_length, embedded_model_path, load_causal_lm
from hf_cpt.reporting import write_run_report
from hf_cpt.run_config import RecipeArguments, RecipeParser
from hf_cpt.stages import MEASURED_DIR, run_benchmarks, run_stage, validation_perplexity
from hf_cpt.synth import generate_for_recipe
from hf_cpt.topics import check_corpus_topics, relabel_sources
from hf_cpt.trainer import DATA_RECIPE_NAME
from hf_cpt.utils.errors import run_main
from hf_cpt.utils.io import write_text_atomically

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "llama3_syne_demo.yaml"
FINAL_MODEL_DIR = "final_model"
HELD_OUT_NAME = "validation_held_out.json"
logger = logging.getLogger("llama3_syne")


def save_final_model(
    output_dir: Path, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, recipe: dict[str, Any], card: str
) -> Path:
    """Write `output_dir/final_model` whole or not at all: weights, tokenizer, data recipe and model card.

    The folder is written as `.tmp-final_model` and renamed into place once complete, so a run killed while it
    saves leaves no `final_model/` that looks finished without its recipe or card (`hf-cpt push` uploads the
    folder as it is); the same command run again clears the staging folder and writes it anew.
    """
    final_dir, staging = output_dir / FINAL_MODEL_DIR, output_dir / f".tmp-{FINAL_MODEL_DIR}"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / DATA_RECIPE_NAME).write_text(json.dumps(recipe, indent=2, ensure_ascii=False), encoding="utf-8")
    (staging / "README.md").write_text(card, encoding="utf-8")  # `hf-cpt push` uploads it with the model
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(staging, final_dir)
    return final_dir


def load_run_corpus(
    args: RecipeArguments,
    config: CPTConfig,
    tokenizer: PreTrainedTokenizerBase,
    dataset_path: str,
    extra_train: dict[str, Any] | None = None,
    source_paths: dict[str, str] | None = None,
) -> Corpus:
    """The run's corpus, its topics checked against the taxonomies (labels the classifiers wrote are theirs).

    A topic value outside its source's taxonomy is refused, or with `unknown_topics: others` its blocks and
    validation documents count as the source's `Others`.
    """
    corpus = load_corpus(
        dataset_path,
        args.sources,
        tokenizer,
        config.max_length,
        args.text_column,
        args.topic_column,
        args.topic_sources,
        args.min_doc_tokens,
        args.num_proc,
        extra_train=extra_train,
        source_paths=source_paths,
        validation_documents=args.validation_documents,  # held out where a source has no validation split
        validation_seed=config.seed,
        pack_by=args.pack_by,
    )
    groups = check_corpus_topics(
        corpus.group_names,
        args.topic_classifier.taxonomies if args.topic_classifier else None,
        unknown_to_others=args.unknown_topics == "others",
    )
    return corpus.regrouped(groups)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", str(DEFAULT_CONFIG), *argv]
    args, config = RecipeParser().parse_args_and_config(argv)
    state = PartialState(cpu=config.use_cpu)
    # INFO from this recipe and hf-cpt on the main process; other libraries' INFO lines are noise here.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("hf_cpt", logger.name):
        logging.getLogger(name).setLevel(logging.INFO if state.is_main_process else logging.WARNING)
    model_name = args.model_name_or_path or EMBEDDED_MODEL_ID
    model_path = args.model_name_or_path or str(embedded_model_path())
    dataset_path = args.dataset_path or DEMO_CORPUS_PATH
    check_max_length(AutoConfig.from_pretrained(model_path), config.max_length)
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    # Prepare: synthetic QA (§3.3) and topic labels from trained classifiers (§3.2.1); both resume on a re-run.
    synthesis, extra_train = None, None
    if args.synthesis is not None:
        synthesis = generate_for_recipe(args.synthesis, args.model_name_or_path, config.output_dir)
        extra_train = {args.synthesis.source: synthesis["pairs"]}
    classifiers, source_paths = None, {}
    if args.topic_classifier is not None:
        labels_dir, classifiers = relabel_sources(
            args.topic_classifier, dataset_path, config.output_dir, args.text_column, args.topic_column
        )
        source_paths = dict.fromkeys(classifiers, labels_dir)
    # Sources read from another dataset, mapped to text, filtered or partly corrupted (the §4.2 ablations).
    with state.main_process_first():
        source_paths |= derive_sources(
            args.source_options, dataset_path, config.output_dir, args.text_column, args.num_proc
        )

    with state.main_process_first():
        corpus = load_run_corpus(args, config, tokenizer, dataset_path, extra_train, source_paths)
    model = load_causal_lm(model_path, config.attn_implementation, dtype=getattr(torch, args.model_dtype))
    model.to(state.device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    eval_options = {"batch_size": args.eval_batch_size, "limit": args.eval_limit}  # lm-eval, before and after
    ppl_tables = {}

    def measure_validation(label: str) -> None:
        """The validation perplexity table at one point of the run, kept for a rerun (`MEASURED_DIR`)."""
        saved = Path(config.output_dir, MEASURED_DIR, f"validation_perplexity {label}.json")
        ppl_tables[label] = validation_perplexity(model, corpus, config, args.eval_batch_size, pad_id, tokenizer, saved)

    if corpus.validation is not None:
        measure_validation("before")
    before = run_benchmarks(model, tokenizer, args.eval_benchmarks, config.output_dir, "before", **eval_options)
    stages = []
    for stage in args.stages:
        previous_dir = os.path.join(config.output_dir, stages[-1].name) if stages else None
        stages.append(run_stage(stage, model, tokenizer, corpus, config, previous_dir))
        if corpus.validation is not None:
            measure_validation(f"after {stage.name}")
    after = run_benchmarks(model, tokenizer, args.eval_benchmarks, config.output_dir, "after", **eval_options)

    if state.is_main_process:
        recipe = {stage.name: stage.recipe for stage in stages}
        if corpus.held_out:  # which documents left training to be validation, per source and topic
            write_text_atomically(
                Path(config.output_dir, HELD_OUT_NAME), json.dumps(corpus.held_out, ensure_ascii=False)
            )
        evaluation = {"before": before, "after": after} if before is not None else None
        card = model_card(
            base_model=model_name,
            recipe=recipe,
            evaluation=evaluation,
            mixture={stage.name: stage.mixture for stage in stages},
            curriculum={stage.name: stage.curriculum for stage in stages},
        )
        save_final_model(Path(config.output_dir), model, tokenizer, recipe, card)
        report = write_run_report(
            config.output_dir,
            model_name=model_name,
            dataset_path=dataset_path,
            config=config,
            ppl_tables=ppl_tables,
            stages=stages,
            synthesis=synthesis,
            benchmarks=evaluation,
            classifiers=classifiers,
        )
        logger.info("Report: %s", report)
    state.wait_for_everyone()


if __name__ == "__main__":
    # Errors end in one sentence; `--debug` (or HF_CPT_DEBUG=1) shows the traceback.
    sys.exit(run_main(main, prog="llama3_syne"))

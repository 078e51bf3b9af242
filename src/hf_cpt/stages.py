"""A run in stages: plan, train, resume or skip each stage, and measure the model between them.

A stage's folder `output_dir/<name>` holds its checkpoints, its model, `trainer_state.json` and
`data_recipe.json` (written last: a stage with one is finished), plus `topic_mixture.json` for a stage with
the topic mixture and `curriculum.json` for one with a curriculum. Re-running the same stages skips a finished
stage (its model is loaded instead) and resumes an unfinished one from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase
from transformers.trainer_utils import get_last_checkpoint

from hf_cpt.callbacks import global_batch_size
from hf_cpt.checkpoints import check_finished_stage, corpus_fingerprint, run_fingerprint
from hf_cpt.config import CPTConfig
from hf_cpt.curriculum.callback import PROGRESS_NAME
from hf_cpt.data.corpus import Corpus
from hf_cpt.mixture import load_drawn_blocks, plan_stage
from hf_cpt.mixture.callback import HISTORY_NAME
from hf_cpt.perplexity import perplexity_by_group
from hf_cpt.run_config import StageConfig
from hf_cpt.trainer import DATA_RECIPE_NAME, CPTTrainer
from hf_cpt.utils.distributed import broadcast_object
from hf_cpt.utils.io import write_text_atomically
from hf_cpt.utils.resumable import model_fingerprint, tokenizer_fingerprint

logger = logging.getLogger(__name__)

MEASURED_DIR = "measured"
"""The folder of a run's output where `validation_perplexity(saved=...)` keeps each point's table for a rerun."""


@dataclass
class StageResult:
    """What a finished stage leaves for the report and the model card.

    Args:
        name: the stage's name (its folder under `output_dir`).
        log_history: the trainer's log history.
        recipe: the stage's data recipe (`CPTTrainer.data_recipe()`): tokens per source against the target.
        mixture: the topic mixture's rounds (`topic_mixture.json`), or none.
        curriculum: the curriculum's progress (`curriculum.json`), or `None`.
    """

    name: str
    log_history: list[dict[str, Any]]
    recipe: dict[str, Any]
    mixture: list[dict[str, Any]]
    curriculum: dict[str, Any] | None


def mixture_rounds(stage_dir: str | Path) -> list[dict[str, Any]]:
    """The topic mixture's rounds a stage wrote, or none."""
    path = Path(stage_dir, f"{HISTORY_NAME}.json")
    return json.loads(path.read_text())["rounds"] if path.is_file() else []


def curriculum_progress(stage_dir: str | Path) -> dict[str, Any] | None:
    """The curriculum's progress a stage wrote, or None."""
    path = Path(stage_dir, PROGRESS_NAME)
    return json.loads(path.read_text()) if path.is_file() else None


def validation_perplexity(
    model: torch.nn.Module,
    corpus: Corpus,
    config: CPTConfig,
    batch_size: int,
    pad_id: int,
    tokenizer: PreTrainedTokenizerBase | None = None,
    saved: str | Path | None = None,
) -> dict[str, Any]:
    """Per-group validation perplexity of `corpus.validation`, under the same bf16 autocast as training.

    With the corpus's `tokenizer`, also bits per byte, which runs with different tokenizers can compare. With
    `saved`, the table is kept in that JSON file with a fingerprint of the weights and the validation documents;
    a rerun that finds the same fingerprint reads it back (on a 100B-token run's 12,000 validation documents
    an 8B model takes many minutes per table). The main process decides, so every rank does the same.
    """
    fingerprint = {
        "model": model_fingerprint(model),
        "validation": corpus_fingerprint(corpus.validation),
        "groups": corpus.group_names,
        "bf16": config.bf16,
        "bits_per_byte": tokenizer is not None,
    }
    table = None
    if saved is not None and PartialState().is_main_process:
        kept = _measured_already(Path(saved), fingerprint)
        if kept is not None:
            logger.info("Validation perplexity of this model: read back from %s.", saved)
            table = kept["table"]
    table = broadcast_object(table)
    if table is not None:
        return table
    table = perplexity_by_group(
        model, corpus.validation, corpus.group_names, batch_size, pad_id, bf16=config.bf16, tokenizer=tokenizer
    )
    if saved is not None and PartialState().is_main_process:
        write_text_atomically(saved, json.dumps({"fingerprint": fingerprint, "table": table}, ensure_ascii=False))
    return table


def _measured_already(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """What `path` holds when it records `fingerprint` (the same weights and settings were measured), else None."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved if saved.get("fingerprint") == fingerprint else None


def run_benchmarks(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    benchmarks: list[str] | None,
    output_dir: str | Path,
    name: str,
    batch_size: int = 8,
    limit: int | None = None,
) -> dict[str, Any] | None:
    """The lm-eval `benchmarks` on the model as it is now, saved as `output_dir/evaluation_<name>.json`.

    The file records what was measured (`fingerprint`: the model's weights and tokenizer, the benchmarks, the
    limit); a rerun that finds the same fingerprint reads it back instead of measuring again, since on an 8B
    model the benchmarks before CPT take about an hour and a run killed in stage 2 would otherwise repeat them.
    Runs on the main process only; returns the result's dict there and `None` elsewhere or without benchmarks.
    """
    from hf_cpt.evaluation import evaluate

    if not benchmarks or not PartialState().is_main_process:
        return None
    path = Path(output_dir, f"evaluation_{name}.json")
    fingerprint = {
        "model": model_fingerprint(model),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "benchmarks": list(benchmarks),
        "limit": limit,
    }
    saved = _measured_already(path, fingerprint)
    if saved is not None:
        logger.info("Benchmarks %s: this model's scores are in %s already; read back, not measured.", name, path)
        return saved
    result = evaluate(model, benchmarks, tokenizer=tokenizer, batch_size=batch_size, limit=limit).to_dict()
    result["fingerprint"] = fingerprint
    write_text_atomically(path, json.dumps(result, indent=2))
    return result


def _finished_stage(stage_dir: str, name: str) -> StageResult:
    state = json.loads(Path(stage_dir, "trainer_state.json").read_text())
    return StageResult(
        name=name,
        log_history=state["log_history"],
        recipe=json.loads(Path(stage_dir, DATA_RECIPE_NAME).read_text()),
        mixture=mixture_rounds(stage_dir),
        curriculum=curriculum_progress(stage_dir),
    )


def run_stage(
    stage: StageConfig,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    corpus: Corpus,
    config: CPTConfig,
    previous_dir: str | None = None,
) -> StageResult:
    """Plan and train one stage in `config.output_dir/<stage.name>`, resuming or skipping it as its folder says.

    `model` is trained in place (or, for a finished stage, given the stage's weights). A stage after the first
    passes the folder of the stage before as `previous_dir`: it then draws the blocks earlier stages drew only
    once a source has no unused ones left, so each token is trained once across the run. The per-topic
    validation documents of `corpus` drive the topic mixture of a stage that sets `mixture_alpha`.
    """
    stage_dir = os.path.join(config.output_dir, stage.name)
    stage_config = stage.training_args(config, stage_dir)
    global_batch = global_batch_size(stage_config)
    sampler = plan_stage(
        corpus.train,
        stage.ratios,
        stage.num_tokens,
        global_batch,
        seed=stage_config.seed,
        stage=stage.label,
        exclude=load_drawn_blocks(previous_dir, corpus.train) if previous_dir else None,
    )
    planned_steps = len(sampler) // global_batch
    if stage_config.max_steps <= 0 or stage_config.max_steps > planned_steps:
        stage_config.max_steps = planned_steps
    if os.path.isfile(os.path.join(stage_dir, DATA_RECIPE_NAME)):
        # A stage edited since it finished is not skipped as if it were the one asked for.
        check_finished_stage(
            stage_dir,
            run_fingerprint(stage_config, corpus.train, sampler),
            stage.name,
            allow_changes=stage_config.resume_on_mismatch,
        )
        logger.info(
            "Stage %s is already finished in %s; skipping it (delete the folder to retrain).", stage.name, stage_dir
        )
        model.load_state_dict(AutoModelForCausalLM.from_pretrained(stage_dir, dtype=model.dtype).state_dict())
        return _finished_stage(stage_dir, stage.name)
    trainer = CPTTrainer(
        model=model,
        args=stage_config,
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation if stage_config.mixture_alpha is not None else None,
        curriculum_disciplines=corpus.block_labels,  # a source packed by discipline: PB, BP, PBP order by them
    )
    last = get_last_checkpoint(stage_dir) if os.path.isdir(stage_dir) else None
    logger.info(
        "Stage %s: %d blocks (%d tokens) in %d steps%s.",
        stage.name,
        len(sampler),
        len(sampler) * config.max_length,
        stage_config.max_steps,
        f", resuming from {last}" if last else "",
    )
    trainer.train(resume_from_checkpoint=last)
    # The state first: save_model writes data_recipe.json last, which marks the stage finished, and a finished
    # stage is read back from its trainer_state.json.
    trainer.save_state()
    trainer.save_model()
    return StageResult(
        name=stage.name,
        log_history=trainer.state.log_history,
        recipe=trainer.data_recipe(),
        mixture=mixture_rounds(stage_dir),
        curriculum=curriculum_progress(stage_dir),
    )

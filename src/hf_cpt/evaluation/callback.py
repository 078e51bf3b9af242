"""Evaluating the model being trained, from inside a `transformers.Trainer` run.

A small offline suite (the bundled bilingual check by default) at the end of each stage, or every N
steps, shows forgetting and gains as they happen instead of after the run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_cpt.callbacks import LogMergingCallback
from hf_cpt.evaluation.benchmarks import Benchmark, resolve_benchmarks
from hf_cpt.evaluation.runner import evaluate, require_lm_eval

logger = logging.getLogger(__name__)


class EvaluationCallback(LogMergingCallback):
    """Run benchmarks on the model in training and log `eval/<benchmark>` scores.

    `every="stage_end"` evaluates once when training ends (a CPT stage is one `train()` call);
    `every="steps"` evaluates every `eval_steps` optimizer steps. Evaluation runs on the main process
    only, on the unwrapped model in eval mode (its previous mode is restored), so it suits a single
    process or DDP, not a model sharded by FSDP or ZeRO-3. Scores join the Trainer's next log
    (`hf_cpt.callbacks`; at the end of training, a log of their own), so the Trainer's own `loss`
    stays; with `trainer=` given they reach its `report_to` loggers too. Each evaluation is also kept
    in `self.results` as `{"step": ..., "scores": {...}}`. `include_path`
    names a folder of extra task YAMLs for `Benchmark`s of one's own.
    """

    def __init__(
        self,
        benchmarks: Sequence[str | Benchmark] | str = "bundled",
        *,
        every: Literal["stage_end", "steps"] = "stage_end",
        eval_steps: int | None = None,
        limit: int | float | None = None,
        trainer: Any = None,
        batch_size: int = 8,
        include_path: str | None = None,
    ) -> None:
        if every not in ("stage_end", "steps"):
            raise ValueError(f"every={every!r} is not supported; use 'stage_end' or 'steps'.")
        if every == "steps" and (eval_steps is None or eval_steps < 1):
            raise ValueError("eval_steps must be a positive integer when every='steps'; set eval_steps=N.")
        resolve_benchmarks(benchmarks)
        require_lm_eval()
        super().__init__(trainer)
        self.benchmarks = benchmarks
        self.every = every
        self.eval_steps = eval_steps
        self.limit = limit
        self.batch_size = batch_size
        self.include_path = include_path
        self.results: list[dict[str, Any]] = []

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.every == "steps" and state.global_step % self.eval_steps == 0:
            self._evaluate(state, kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.every == "stage_end":
            self._evaluate(state, kwargs)
        super().on_train_end(args, state, control, **kwargs)

    def _evaluate(self, state: TrainerState, kwargs: dict[str, Any]) -> None:
        if not state.is_world_process_zero:
            return
        model, tokenizer = kwargs["model"], kwargs.get("processing_class")
        if tokenizer is None and self.trainer is not None:
            tokenizer = self.trainer.processing_class
        if tokenizer is None:
            raise ValueError("EvaluationCallback needs the tokenizer; pass processing_class=tokenizer to the Trainer.")
        was_training = model.training
        model.eval()
        try:
            result = evaluate(
                model,
                self.benchmarks,
                tokenizer=tokenizer,
                batch_size=self.batch_size,
                limit=self.limit,
                include_path=self.include_path,
            )
        finally:
            model.train(was_training)
        self.results.append({"step": state.global_step, "scores": dict(result.scores)})
        logs = {f"eval/{name}": score for name, score in result.scores.items()}
        logger.info("Step %d: %s", state.global_step, logs)
        self.queue_metrics(logs)

"""The shared base of hf-cpt's callbacks: metrics that join the Trainer's own logs, state kept in checkpoints.

The metrics of a callback join the Trainer's own logs instead of replacing them.

Why not `trainer.log()` from a callback: `DefaultFlowCallback.on_step_end` sets `control.should_log` at a
logging step, and every `Trainer.log` ends in `CallbackHandler.on_log`, which resets it. A callback that
logs from its own `on_step_end` therefore makes the Trainer skip its log of that step: `loss`, `grad_norm`,
`learning_rate` (and what a Trainer subclass adds to them, e.g. `CPTTrainer`'s `loss/<group>`) are lost.

What the callbacks here do instead: they queue their metrics and add them to the next log the Trainer
writes itself, in `on_log`: a training log (it has `loss`) or, for what is still queued when training
ends, the end-of-training summary (it has `train_loss`). Whatever is queued after that summary (an
evaluation at `on_train_end`) goes out in a log of its own, which is safe once the loop is over. This works
in any `Trainer` (a plain one, `CPTTrainer`, TRL's `SFTTrainer`), because it uses only the callback events.

How the metrics reach every logger: `Trainer.log` first appends a copy of `logs` to `state.log_history`,
then calls each callback's `on_log` with `logs` in the handler's order: `DefaultFlowCallback`, the
`report_to` integrations (TensorBoard, W&B, ...), the user's callbacks, the progress bar. In `on_log` the
callback adds its metrics to `logs` (every callback after it sees them) and to that `log_history` entry.
To come before the integrations, a callback that knows its trainer (`trainer=`) moves itself at
`on_train_begin` to just after `DefaultFlowCallback` (after the other callbacks of this kind, keeping their
order). The handler gets a new list, so the event being dispatched finishes over the old one unchanged.
Without a trainer, the metrics reach `log_history` and the callbacks after this one only.

A value queued twice before a log keeps the later one: a logger shows one value per name and step.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import DefaultFlowCallback, ExportableState

TRAINING_LOG_KEYS = ("loss", "train_loss")  # the Trainer's per-window log and its end-of-training summary


def is_training_log(logs: dict[str, float] | None) -> bool:
    """Whether `logs` are the Trainer's log of a logging step (not an evaluation or the final summary)."""
    return logs is not None and "loss" in logs


class LogMergingCallback(TrainerCallback):
    """Base class of callbacks whose metrics go out with the Trainer's own logs (see the module docstring).

    Subclasses call `queue_metrics` where they have something to report (from any event, `on_log`
    included, before calling `super().on_log`), and call `super()` in `on_train_begin`, `on_log` and
    `on_train_end` when they override them.
    """

    def __init__(self, trainer: Any = None) -> None:
        self.trainer = trainer
        self.pending_metrics: dict[str, float] = {}

    def queue_metrics(self, metrics: dict[str, float]) -> None:
        """Report `metrics` with the Trainer's next training log or end-of-training summary."""
        self.pending_metrics.update(metrics)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        handler = getattr(self.trainer, "callback_handler", None)
        if handler is None or not any(callback is self for callback in handler.callbacks):
            return
        others = [callback for callback in handler.callbacks if callback is not self]
        position = 0
        while position < len(others) and isinstance(others[position], (DefaultFlowCallback, LogMergingCallback)):
            position += 1
        handler.callbacks = [*others[:position], self, *others[position:]]

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if not self.pending_metrics or not any(key in (logs or {}) for key in TRAINING_LOG_KEYS):
            return
        metrics, self.pending_metrics = self.pending_metrics, {}
        entry = state.log_history[-1] if state.log_history else {}
        if entry.get("step") == state.global_step and any(key in entry for key in TRAINING_LOG_KEYS):
            entry.update(metrics)  # the copy of `logs` that Trainer.log appended just before calling on_log
        else:
            state.log_history.append({**logs, **metrics, "step": state.global_step})
        logs.update(metrics)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        """Send what was queued after the end-of-training summary: the loop is over, no log can be lost."""
        if not self.pending_metrics:
            return
        metrics, self.pending_metrics = self.pending_metrics, {}
        if self.trainer is not None:
            self.trainer.log(metrics)
        else:
            state.log_history.append({**metrics, "step": state.global_step})


class CheckpointedCallback(LogMergingCallback, ExportableState):
    """A `LogMergingCallback` whose `state()` goes into every checkpoint (`ExportableState`) and comes back on resume.

    The Trainer restores callback states only with `restore_callback_states_from_checkpoint`, by building the
    callbacks anew from their saved `args`; these callbacks hold what a checkpoint cannot (the sampler, datasets),
    so they read their saved attributes themselves at `on_train_begin`.
    """

    def saved_attributes(self, state: TrainerState) -> dict[str, Any]:
        """The attributes this callback's `state()` saved in the checkpoint being resumed; empty on a fresh run."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, list):  # the Trainer keeps a list when it holds several callbacks of one class
            saved = saved[0] if saved else None
        return dict((saved or {}).get("attributes", {}))


def global_batch_size(args: TrainingArguments) -> int:
    """Training blocks in one optimizer step across all processes: the stride of the sampler's order per step."""
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size

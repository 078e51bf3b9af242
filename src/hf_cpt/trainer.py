"""`CPTTrainer`: a `transformers.Trainer` for continual pre-training on topic-pure packed blocks.

What it adds to `Trainer`, and nothing else:
- the paper's schedule (WSD warming up from a non-zero floor, `hf_cpt.schedules`);
- one seam for the data order: `train_sampler=` (e.g. `plan_stage`'s `TopicMixtureSampler`), and, with
  `mixture_alpha` set, the online topic re-weighting of §3.2.1 (`TopicPerplexityCallback`) on it, and
  with `curriculum_order` set, the perplexity curriculum of §3.2.2 (`PPLCurriculumCallback`) within topics;
- per-group (topic or source) training loss and tokens consumed at every logging step, read from the
  `group` id each packed block carries, out of the same per-token losses the training loss sums;
- a training loss that never holds the full-vocabulary logits: the model returns its last hidden states and
  the loss applies the output embeddings a chunk of positions at a time (`CPTConfig.loss_chunk_size`), or
  through Liger-Kernel's fused kernel with `use_liger_kernel`;
- the data recipe (groups, target ratios, tokens consumed) in every checkpoint and the final model
  folder, restored on `resume_from_checkpoint`;
- a model card (`create_model_card`, which `push_to_hub` calls) with that recipe, the topic mixture's rounds
  and the curriculum's progress.
- checkpoints that are complete or ignored, and resumes that notice a changed run (`hf_cpt.checkpoints`): each
  checkpoint is written into a staging folder and renamed into place; a resume checks it, falls back to the
  previous complete one, refuses a changed run in one sentence, and at another world size or batch continues the
  order at the global position reached, within the stage's token budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from torch.utils.data import Sampler
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from hf_cpt.callbacks import global_batch_size
from hf_cpt.checkpoints import (
    STAGING_DIR,
    TRAINER_STATE_NAME,
    check_resume,
    checkpoint_warnings,
    read_fingerprint,
    resolve_checkpoint,
    run_fingerprint,
    write_fingerprint,
)
from hf_cpt.config import CPTConfig
from hf_cpt.curriculum import PPLCurriculumCallback
from hf_cpt.data.packing import GROUP_COLUMN, collate_blocks, source_of
from hf_cpt.linear_cross_entropy import head_reproduces_logits, output_head, sequence_nll_from_hidden
from hf_cpt.mixture import TopicMixtureSampler, TopicPerplexityCallback, save_drawn_blocks
from hf_cpt.mixture.stage import DRAWN_BLOCKS_NAME
from hf_cpt.modeling import check_max_length, load_causal_lm
from hf_cpt.perplexity import sequence_nll
from hf_cpt.schedules import get_wsd_schedule_with_floor
from hf_cpt.utils.errors import naming_path
from hf_cpt.utils.io import atomic_path, write_text_atomically

logger = logging.getLogger(__name__)

DATA_RECIPE_NAME = "data_recipe.json"


class CPTTrainer(Trainer):
    """Trainer for continual pre-training. Takes everything `Trainer` takes, plus:

    Args:
        model: a model, or a name or path loaded with `AutoModelForCausalLM` (FlashAttention 2 when
            installed, else sdpa).
        args: a `CPTConfig` (a plain `TrainingArguments` is converted, keeping its values).
        train_sampler: the order of training blocks as global dataset indices, identical on every rank
            (accelerate shards it), e.g. the `TopicMixtureSampler` of `plan_stage`. Its `target_ratios` and
            weight `history`, when it has them, go into the saved data recipe.
        group_names: names of the `group` ids; read from `train_dataset.features["group"]` when omitted.
        topic_eval_dataset: per-topic validation documents for the topic mixture (`input_ids` and `group`
            columns, e.g. `Corpus.validation`, or a mapping topic name -> dataset); needed when
            `args.mixture_alpha` is set.
        curriculum_scores: perplexity per training block for `args.curriculum_order` (e.g. from
            `hf-cpt score-ppl`); default: scored at the start of training with the model being trained.
        curriculum_disciplines: discipline label per training block, for the `PB`, `BP`, `PBP` orders.
    """

    def __init__(
        self,
        model: PreTrainedModel | str | None = None,
        args: CPTConfig | TrainingArguments | None = None,
        train_sampler: Sampler[int] | None = None,
        group_names: Sequence[str] | None = None,
        topic_eval_dataset: Dataset | Mapping[str, Dataset] | None = None,
        curriculum_scores: Sequence[float] | None = None,
        curriculum_disciplines: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else type(model).__name__
            args = CPTConfig(output_dir=f"{str(name).split('/')[-1]}-cpt")
        elif not isinstance(args, CPTConfig):
            # From the dataclass fields, not `to_dict()`, which masks `hub_token` and every other `*_token`.
            values = {field.name: getattr(args, field.name) for field in dataclasses.fields(args) if field.init}
            args = CPTConfig(**values)
        if isinstance(model, str):
            model = load_causal_lm(model, args.attn_implementation)
        elif model is not None:
            logger.info("Attention kernel: %s.", getattr(model.config, "_attn_implementation", "unknown"))
        if model is not None:
            check_max_length(model.config, args.max_length)
        kwargs.setdefault("data_collator", collate_blocks)
        super().__init__(model=model, args=args, **kwargs)
        self.train_sampler = train_sampler
        documents = getattr(train_sampler, "num_documents", None)
        if documents is not None and self.train_dataset is not None and documents != len(self.train_dataset):
            raise ValueError(
                f"train_sampler has topics for {documents} documents but train_dataset has {len(self.train_dataset)} "
                "rows; build the sampler from the training dataset itself (one topic id per row)."
            )
        if group_names is None and self.train_dataset is not None and hasattr(self.train_dataset, "features"):
            feature = self.train_dataset.features.get(GROUP_COLUMN)
            group_names = getattr(feature, "names", None)
        self.group_names = list(group_names) if group_names is not None else []
        if self.compute_loss_func is None:
            self.compute_loss_func = self._causal_lm_loss
        n = max(1, len(self.group_names))
        self._window_nll = torch.zeros(n, dtype=torch.float64, device=self.args.device)
        self._window_loss_tokens = torch.zeros(n, dtype=torch.float64, device=self.args.device)
        self._unsynced_tokens = torch.zeros(n, dtype=torch.float64, device=self.args.device)
        self.tokens_consumed = dict.fromkeys(self.group_names, 0)
        self._batch_groups: torch.Tensor | None = None
        # The curriculum first: its orders must be in the sampler before the mixture restores its state.
        self.curriculum_callback = self._curriculum_callback(curriculum_scores, curriculum_disciplines)
        self.mixture_callback = self._topic_mixture_callback(topic_eval_dataset)
        for callback in (self.curriculum_callback, self.mixture_callback):
            if callback is not None:
                self.add_callback(callback)
        # Last, so that it places the sampler after the mixture and curriculum have restored theirs.
        self.add_callback(_ContinueAtPosition(self))

    # (step, position) of a resume that continues the order by position, the sampler's weight history to resume
    # with when the stage's mixture was edited since (`_edited_mixture_history`), and the folder a checkpoint is staged
    # in while it is written. Class defaults: none.
    _resume_at: tuple[int, int] | None = None
    _resume_history: list[tuple[int, dict[str, float]]] | None = None
    _staging_root: str | None = None

    def _require_topic_sampler(self, field: str) -> TopicMixtureSampler:
        if not isinstance(self.train_sampler, TopicMixtureSampler):
            raise ValueError(
                f"{field} is set but train_sampler is not a TopicMixtureSampler; pass one (e.g. from "
                f"plan_stage) or leave {field} unset."
            )
        return self.train_sampler

    def _curriculum_callback(self, scores, disciplines) -> PPLCurriculumCallback | None:
        """The §3.2.2 curriculum within the chosen topics, when the config asks for it."""
        args = self.args
        if args.curriculum_order is None:
            return None
        return PPLCurriculumCallback(
            self._require_topic_sampler("curriculum_order"),
            self.train_dataset,
            order=args.curriculum_order,
            topics=args.curriculum_topics,
            scores=scores,
            disciplines=disciplines,
            seed=args.seed,
            num_difficulty_groups=args.curriculum_num_difficulty_groups,
            trainer=self,
            rescore_steps=args.curriculum_rescore_steps,
        )

    def _topic_mixture_callback(self, eval_dataset) -> TopicPerplexityCallback | None:
        """The §3.2.1 re-weighting on the train sampler, when the config asks for it."""
        args = self.args
        if args.mixture_alpha is None:
            return None
        sampler = self._require_topic_sampler("mixture_alpha")
        if eval_dataset is None:
            raise ValueError(
                "mixture_alpha is set but topic_eval_dataset is missing; pass per-topic validation documents "
                "(e.g. Corpus.validation) to CPTTrainer."
            )
        names = sampler.topic_names
        return TopicPerplexityCallback(
            sampler,
            eval_dataset,
            trainer=self,
            alpha=args.mixture_alpha,
            importance=args.mixture_importance,
            round_steps=args.mixture_round_steps,
            round_tokens=args.mixture_round_tokens,
            partition={name: source_of(name) for name in names} if args.mixture_scope == "source" else None,
            min_proportion=args.mixture_min_proportion,
            batch_size=args.per_device_eval_batch_size,
        )

    # ---- data order ----
    def _get_train_sampler(self, train_dataset=None) -> Sampler | None:
        if self.train_sampler is not None:
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    # ---- schedule ----
    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        if self.lr_scheduler is None and self.args.lr_scheduler_type == "warmup_stable_decay":
            self.lr_scheduler = get_wsd_schedule_with_floor(
                optimizer if optimizer is not None else self.optimizer,
                num_training_steps=num_training_steps,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                warmup_start_ratio=self.args.warmup_start_lr / self.args.learning_rate,
                decay_ratio=self.args.decay_ratio,
                min_lr_ratio=self.args.min_lr_ratio,
                decay_type=self.args.decay_type,
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    # ---- loss and per-group accounting ----
    # The head the loss applies itself for the model it was decided for (see `_loss_head_for`), and whether the
    # first step has confirmed that it reproduces the model's logits. Class defaults: nothing decided yet.
    _head_decided_for: nn.Module | None = None
    _decided_head: nn.Linear | None = None
    _head_confirmed: bool = False
    _batch_head: nn.Linear | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        groups = inputs.pop(GROUP_COLUMN, None)
        self._batch_groups = groups if model.training and self.group_names else None
        if self._batch_groups is not None:
            block_tokens = torch.full_like(groups, inputs["input_ids"].shape[1], dtype=torch.float64)
            self._unsynced_tokens.index_add_(0, groups.to(self._unsynced_tokens.device), block_tokens)
        # Training asks the model for its last hidden states and the logits of one position only; evaluation and
        # prediction, which may return the logits, get them whole.
        self._batch_head = self._loss_head_for(model) if model.training and not return_outputs else None
        if self._batch_head is not None:
            inputs = {**inputs, "output_hidden_states": -1, "logits_to_keep": 1}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _loss_head_for(self, model: nn.Module) -> nn.Linear | None:
        """The output embeddings `_causal_lm_loss` applies itself, or None where the loss reads the model's logits.

        Hidden states come from the model as called (through DDP, DeepSpeed, compile or PEFT wrappers); the head
        is the unwrapped model's, the same parameters. Decided once per model, and said in the log when the
        model cannot take this path.
        """
        if not self.args.loss_chunk_size or self.compute_loss_func != self._causal_lm_loss:
            return None
        unwrapped = self.accelerator.unwrap_model(model, keep_torch_compile=False)
        if self._head_decided_for is not unwrapped:
            head, reason = output_head(unwrapped)
            if head is None:
                logger.warning("The loss is computed from the model's full logits: %s.", reason)
            self._head_decided_for, self._decided_head, self._head_confirmed = unwrapped, head, False
        return self._decided_head

    def _causal_lm_loss(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        """transformers' causal-LM loss, computed once per token and also summed per group."""
        head = self._batch_head
        if head is None:
            nll, tokens = sequence_nll(outputs.logits, labels)
        else:
            nll, tokens = self._nll_from_hidden_states(outputs, labels, head)
        if self._batch_groups is not None:
            groups = self._batch_groups.to(self._window_nll.device)
            self._window_nll.index_add_(0, groups, nll.detach().double())
            self._window_loss_tokens.index_add_(0, groups, tokens.double())
        denominator = num_items_in_batch if num_items_in_batch is not None else tokens.sum()
        return nll.sum() / denominator

    def _nll_from_hidden_states(self, outputs, labels: torch.Tensor, head: nn.Linear):
        """Per-sequence NLL and predicted tokens from the last hidden state, the head applied chunk by chunk."""
        hidden_states = getattr(outputs, "hidden_states", None)
        if not hidden_states or hidden_states[-1] is None:
            raise ValueError(
                f"{type(self._head_decided_for).__name__} returned no last hidden state for output_hidden_states; "
                "set loss_chunk_size=0 to train on the model's own logits."
            )
        hidden = hidden_states[-1]
        # The model's forward runs under accelerate's autocast; the head here computes in the same precision.
        with self.accelerator.autocast():
            if not self._head_confirmed:
                self._confirm_head(head, hidden, outputs.logits)
            return sequence_nll_from_hidden(
                hidden, head.weight, labels, head.bias, self.args.loss_chunk_size, self.args.use_liger_kernel
            )

    def _confirm_head(self, head: nn.Linear, hidden: torch.Tensor, logits: torch.Tensor) -> None:
        """At the first step: the head on the last hidden state must give the model's own last-position logits."""
        with torch.no_grad():
            head_logits = F.linear(hidden[:, -1:].detach(), head.weight, head.bias)
        if not head_reproduces_logits(logits.detach(), head_logits):
            raise ValueError(
                f"{type(self._head_decided_for).__name__}'s logits are not its output embeddings applied to its last "
                "hidden state (it scales or caps them); set loss_chunk_size=0 to train on the model's own logits."
            )
        self._head_confirmed = True

    def _sync_tokens(self) -> None:
        """Add every rank's block tokens since the last sync to `tokens_consumed` (a collective call)."""
        if not self.group_names:
            return
        totals = self.accelerator.reduce(self._unsynced_tokens.clone(), reduction="sum")
        for name, count in zip(self.group_names, totals.tolist(), strict=True):
            self.tokens_consumed[name] += int(count)
        self._unsynced_tokens.zero_()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.group_names:
            self._sync_tokens()
            nll = self.accelerator.reduce(self._window_nll.clone(), reduction="sum")
            tokens = self.accelerator.reduce(self._window_loss_tokens.clone(), reduction="sum")
            for index, name in enumerate(self.group_names):
                if tokens[index] > 0:
                    logs[f"loss/{name}"] = round((nll[index] / tokens[index]).item(), 4)
            for name, count in self.tokens_consumed.items():
                logs[f"tokens/{name}"] = count
            self._window_nll.zero_()
            self._window_loss_tokens.zero_()
        super().log(logs, start_time)

    # ---- data recipe in checkpoints ----
    def data_recipe(self) -> dict[str, Any]:
        """Groups and sources with their target ratio and the tokens consumed so far (all ranks).

        With a `TopicMixtureSampler`, each source also records `target_blocks` (its cumulative target: the sum
        over the weight history of its share x blocks), `available_blocks` (blocks no earlier stage drew),
        `drawn_blocks` (draws of this stage) and `repeated_blocks` (draws of a block that this stage or an
        earlier one had already drawn).
        """
        targets = dict(getattr(self.train_sampler, "target_ratios", None) or {})
        total = sum(self.tokens_consumed.values())
        groups = {
            name: {"source": source_of(name), "target_ratio": targets.get(name), "tokens_consumed": count}
            for name, count in self.tokens_consumed.items()
        }
        sources: dict[str, dict[str, Any]] = {}
        for entry in groups.values():
            source = sources.setdefault(entry["source"], {"target_ratio": None, "tokens_consumed": 0})
            source["tokens_consumed"] += entry["tokens_consumed"]
            if entry["target_ratio"] is not None:
                source["target_ratio"] = (source["target_ratio"] or 0.0) + entry["target_ratio"]
        for source in sources.values():
            source["consumed_ratio"] = source["tokens_consumed"] / total if total else 0.0
        if isinstance(self.train_sampler, TopicMixtureSampler):
            self._add_block_counts(sources)
        recipe = {
            "max_length": self.args.max_length,
            "world_size": self.args.world_size,
            "global_step": self.state.global_step,
            "tokens_consumed": total,
            "sources": sources,
            "groups": groups,
        }
        history = getattr(self.train_sampler, "history", None)
        if history is not None:
            recipe["weight_history"] = [{"position": position, "weights": weights} for position, weights in history]
        return recipe

    def _trained_position(self) -> int:
        """Blocks trained so far: the position of the sampler's order the optimizer steps have reached.

        After a resume that continued by position, the steps before it may have had another batch size.
        """
        step, position = self._resume_at or (0, 0)
        return position + (self.state.global_step - step) * global_batch_size(self.args)

    def _add_block_counts(self, sources: dict[str, dict[str, Any]]) -> None:
        sampler = self.train_sampler
        position = self._trained_position()
        draws, repeated, fresh = sampler.draws_per_topic(position), sampler.repeated_draws(position), {}
        targets = sampler.cumulative_targets(position)
        for name, count in sampler.fresh_documents().items():
            fresh[source_of(name)] = fresh.get(source_of(name), 0) + count
        for name in sampler.topic_names:
            entry = sources.setdefault(source_of(name), {"target_ratio": None, "tokens_consumed": 0})
            entry["available_blocks"] = fresh[source_of(name)]
            entry["target_blocks"] = entry.get("target_blocks", 0.0) + targets[name]
            entry["drawn_blocks"] = entry.get("drawn_blocks", 0) + draws.get(name, 0)
            entry["repeated_blocks"] = entry.get("repeated_blocks", 0) + repeated[name]

    def run_fingerprint(self) -> dict[str, Any]:
        """This run's fingerprint, as every checkpoint and the final folder record it (`hf_cpt.checkpoints`)."""
        return run_fingerprint(self.args, self.train_dataset, self.train_sampler)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        with naming_path(output_dir if output_dir is not None else self.args.output_dir):  # a full disk: a sentence
            super().save_model(output_dir, _internal_call)
        if not self.args.should_save:
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        write_fingerprint(output_dir, {**self.run_fingerprint(), "trained_blocks": self._trained_position()})
        if self.group_names:
            if isinstance(self.train_sampler, TopicMixtureSampler):
                # What the next stage of the run excludes (`plan_stage(..., exclude=load_drawn_blocks(folder))`).
                mask = self.train_sampler.drawn_mask(self._trained_position())
                with atomic_path(os.path.join(output_dir, DRAWN_BLOCKS_NAME)) as temporary:
                    save_drawn_blocks(temporary, mask, self.train_dataset)
            # Last: a folder with its data recipe holds a finished model.
            recipe = json.dumps(self.data_recipe(), indent=2, ensure_ascii=False)
            write_text_atomically(os.path.join(output_dir, DATA_RECIPE_NAME), recipe)

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is saved, `Trainer` writes it under the staging folder (see `_save_checkpoint`).
        return self._staging_root if self._staging_root is not None else super()._get_output_dir(trial)

    # ---- model card ----
    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Write the CPT model card (`hf_cpt.hub.model_card`) into `output_dir/README.md`, on the main process.

        The card holds what this trainer knows, as one stage named after `output_dir`: its data recipe (tokens
        and ratios per source), the topic mixture's rounds and the curriculum's progress. It takes the arguments
        of `Trainer.create_model_card`, so `push_to_hub(**kwargs)` uploads this card: `finetuned_from` names the
        base model (default: the model's `name_or_path`), `dataset_tags` (else `dataset`) the datasets.
        `tasks` and `dataset_args` describe fine-tuning results in transformers' own card and are not used.
        """
        if not self.is_world_process_zero():
            return
        from hf_cpt.hub import model_card

        stage = os.path.basename(os.path.normpath(self.args.output_dir))
        base_model = finetuned_from or getattr(self.model.config, "name_or_path", "") or type(self.model).__name__
        card = model_card(
            base_model=base_model,
            recipe={stage: self.data_recipe()},
            mixture={stage: self.mixture_callback.rounds} if self.mixture_callback is not None else None,
            curriculum={stage: self.curriculum_callback.summary()} if self.curriculum_callback is not None else None,
            model_name=model_name,
            tags=[tags] if isinstance(tags, str) else tags or (),
            language=language,
            license=license,
            datasets=dataset_tags or dataset,
        )
        os.makedirs(self.args.output_dir, exist_ok=True)
        with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as file:
            file.write(card)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer`'s checkpoint, written into `<output_dir>/.tmp-checkpoints/checkpoint-N` and renamed into place.

        A run killed in the middle leaves the staging folder, never a `checkpoint-N` that looks resumable; the next
        save of that step clears it.
        """
        self._sync_tokens()
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_DIR)
        staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        if self.args.should_save and os.path.isdir(staged):
            shutil.rmtree(staged)
        self.accelerator.wait_for_everyone()
        self._staging_root = staging_root
        try:
            with naming_path(staged):  # a full disk: a sentence naming the checkpoint; the rerun resumes
                super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best is not None and os.path.abspath(best).startswith(os.path.abspath(staging_root)):
                self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
            if os.path.isdir(final):  # left by a run that fell back to an earlier checkpoint
                shutil.rmtree(final)
            os.replace(staged, final)
            with contextlib.suppress(OSError):  # another process may be staging its own checkpoint there
                os.rmdir(staging_root)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """`Trainer.train`, resuming only from a complete checkpoint of the same run (see `hf_cpt.checkpoints`)."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self._resume_at, self._resume_history = None, None
        ignore_data_skip, max_steps = self.args.ignore_data_skip, self.args.max_steps
        if checkpoint is not None:
            self._check_resumed_run(checkpoint)
            recipe_path = os.path.join(checkpoint, DATA_RECIPE_NAME)
            if os.path.isfile(recipe_path):
                with open(recipe_path, encoding="utf-8") as file:
                    saved = json.load(file)["groups"]
                self.tokens_consumed = {
                    name: saved.get(name, {}).get("tokens_consumed", 0) for name in self.group_names
                }
        try:
            output = super().train(resume_from_checkpoint=checkpoint, **kwargs)
        finally:
            self.args.ignore_data_skip = ignore_data_skip
            if self._resume_at is not None:
                self.args.max_steps = max_steps
        self._sync_tokens()
        return output

    def _check_resumed_run(self, checkpoint: str) -> None:
        """Refuse a changed run; warn about missing optimizer state; continue by position where the run changed."""
        saved = read_fingerprint(checkpoint)
        changes = check_resume(saved, self.run_fingerprint(), checkpoint, self.args.resume_on_mismatch)
        for missing in checkpoint_warnings(checkpoint):
            logger.warning(
                "%s: %s, so training resumes with a fresh one and its weights will differ from an uninterrupted run's.",
                checkpoint,
                missing,
            )
        with open(os.path.join(checkpoint, TRAINER_STATE_NAME), encoding="utf-8") as file:
            step = int(json.load(file)["global_step"])
        position = int((saved or {}).get("trained_blocks", step * global_batch_size(self.args)))
        if position != step * global_batch_size(self.args) and not changes:
            changes = ["batches of another size before an earlier resume"]
        if changes:
            self._continue_by_position(checkpoint, step, position, changes)

    def _continue_by_position(self, checkpoint: str, step: int, trained: int, changes: Sequence[str]) -> None:
        """Resume at the global position (blocks) the checkpoint reached, with as many steps as the budget has left.

        At another world size or batch, `Trainer`'s own fast-forward (skip as many batches as steps were trained)
        would skip the wrong number of blocks and train past the stage's budget. Instead the sampler continues at
        the position the checkpoint recorded (`trained_blocks` of its fingerprint), and `max_steps` becomes the
        checkpoint's step plus the whole new batches that fit in the blocks left, so the stage never trains more
        tokens than it was given.
        """
        if not isinstance(self.train_sampler, TopicMixtureSampler):
            raise ValueError(
                f"{checkpoint} was written by another run ({'; '.join(changes)}) and train_sampler is not a "
                "TopicMixtureSampler, whose order can continue by position; resume with the checkpoint's world size "
                "and batch, or pass a TopicMixtureSampler (e.g. from plan_stage)."
            )
        args, batch = self.args, global_batch_size(self.args)
        budget = args.max_steps * batch if args.max_steps > 0 else int(args.num_train_epochs * len(self.train_sampler))
        left = max(0, budget - trained) // batch
        logger.warning(
            "Resuming %s at another run shape (%s): the data order continues at global position %d (block), and "
            "%d more steps of %d blocks keep the stage within its budget of %d blocks.",
            checkpoint,
            "; ".join(changes),
            trained,
            left,
            batch,
            budget,
        )
        self._resume_at = (step, trained)
        args.ignore_data_skip = True
        args.max_steps = step + left
        self._resume_history = self._edited_mixture_history(checkpoint, trained)

    def _edited_mixture_history(self, checkpoint: str, position: int) -> list[tuple[int, dict[str, float]]] | None:
        """The weights to resume with when the stage's mixture was edited since the checkpoint; else None.

        The checkpoint's weight changes before `position`, read from its data recipe (`weight_history`, the
        sampler's history as saved, round changes of the topic mixture included), so that the order, the drawn
        blocks and the targets of the blocks already trained replay as trained; then the edited mixture from
        `position` on. A round change the checkpoint had scheduled past `position` gives way to the edit.
        """
        path = os.path.join(checkpoint, DATA_RECIPE_NAME)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as file:
            trained = json.load(file).get("weight_history")
        planned = self.train_sampler.history[0][1]
        if not trained or trained[0]["weights"] == planned:
            return None
        kept = [(entry["position"], entry["weights"]) for entry in trained if entry["position"] < position]
        return [*kept, (position, planned)]

    def _continue_edited_mixture(self) -> None:
        """Give the sampler the history of `_edited_mixture_history` (after the topic mixture restored its own).

        The topic mixture's rounds then re-weight from the edited weights, over the topics those draw.
        """
        sampler, names = self.train_sampler, self.train_sampler.topic_names
        state = sampler.state_dict()
        state["history"] = [
            {"position": position, "weights": [weights.get(name, 0.0) for name in names]}
            for position, weights in self._resume_history
        ]
        sampler.load_state_dict(state)
        if self.mixture_callback is not None:
            self.mixture_callback.select_validation()
        logger.info(
            "Weights before position %d as trained, the edited mixture from there on%s (the data recipe's "
            "weight_history records both).",
            self._resume_history[-1][0],
            ", the topic mixture's rounds re-weighting from it" if self.mixture_callback is not None else "",
        )


class _ContinueAtPosition(TrainerCallback):
    """At the start of a resumed run that continues by position, put the sampler at that position (with the edited
    mixture from there on, when the stage's mixture was edited since the checkpoint)."""

    def __init__(self, trainer: CPTTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer._resume_at is None:
            return
        if self.trainer._resume_history is not None:
            self.trainer._continue_edited_mixture()
        self.trainer.train_sampler.seek(self.trainer._resume_at[1])

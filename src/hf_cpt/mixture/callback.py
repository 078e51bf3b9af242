"""`TopicPerplexityCallback`: every round, measure validation perplexity per topic and re-weight the sampler.

A round is a number of optimizer steps (or tokens, like the paper's ~40B-token rounds). At the start of
training the callback measures p_i(0); after each round it measures p_i(t) over the validation documents
of the topics it re-weights (token-weighted: NLL and token counts are summed over all ranks before dividing), applies
`update_mixture` to the sampler's current weights, and the new weights apply from the first optimizer
step that no rank has drawn yet. Every rank computes the same numbers; rank 0's are broadcast anyway, so
the ranks cannot drift apart by a rounding difference.

What it leaves behind, in the Trainer's `output_dir`: `topic_mixture.json` (every round: perplexity,
Δp, δ, f and r per topic, passes per topic) and `topic_mixture.png`; in every checkpoint, its rounds and
the sampler's state (through `ExportableState`), so a resumed run draws the same blocks and continues
the same history. A round's metrics go out with the Trainer's next log (`hf_cpt.callbacks`), beside
its `loss`, so TensorBoard, W&B or any `report_to` sees both.

At the start of training it checks that the Trainer trains from the rows the sampler indexes (their
number, and each row's `group` where the data have one): a dataset re-packed (TRL's `packing=True`),
shuffled or filtered after the sampler was built fails there, in one sentence, instead of training on
other blocks than the sampler draws.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from datasets import Dataset
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_cpt.callbacks import CheckpointedCallback, global_batch_size
from hf_cpt.data.packing import GROUP_COLUMN, read_group_ids, with_group_column
from hf_cpt.mixture.sampler import TopicMixtureSampler
from hf_cpt.mixture.update import check_rule_settings, compute_mixture_update
from hf_cpt.perplexity import perplexity_by_group
from hf_cpt.utils.distributed import next_common_position, rank_and_world
from hf_cpt.utils.io import atomic_path, write_text_atomically

logger = logging.getLogger(__name__)

HISTORY_NAME = "topic_mixture"


def _distributed() -> bool:
    return rank_and_world()[1] > 1


def check_training_rows(
    sampler: TopicMixtureSampler, args: TrainingArguments, trainer: Any, train_dataloader: Any
) -> None:
    """Fail unless the Trainer trains from the rows the sampler indexes: as many, and each in the sampler's topic.

    The rows are the training DataLoader's dataset (or the trainer's `train_dataset`). Groups are compared
    where one of them has a `group` column with all its rows (the Trainer may have dropped the column as
    unused): one Arrow read of that column and one gather per topic (0.3 s for 10M rows here).
    """
    candidates = [getattr(train_dataloader, "dataset", None), getattr(trainer, "train_dataset", None)]
    datasets = [dataset for dataset in candidates if dataset is not None and hasattr(dataset, "__len__")]
    if not datasets:
        return
    rows = len(datasets[0])
    if rows != sampler.num_documents:
        fix = (
            "TRL's SFTTrainer re-packed them (packing=True): set packing=False in its SFTConfig, or build the sampler "
            "on the packed dataset (trainer.train_dataset)"
            if getattr(args, "packing", False)
            else "build the sampler on the dataset the Trainer trains from (one topic id per row)"
        )
        raise ValueError(
            f"The Trainer's training dataset has {rows} rows but the TopicMixtureSampler indexes "
            f"{sampler.num_documents}; {fix}."
        )
    labelled = next(
        (data for data in datasets if GROUP_COLUMN in getattr(data, "column_names", ()) and len(data) == rows), None
    )
    if labelled is None:
        return
    groups = read_group_ids(labelled)
    names = getattr(labelled.features[GROUP_COLUMN], "names", None)
    for topic, name in enumerate(sampler.topic_names):
        expected = topic if names is None else names.index(name) if name in names else -1
        members = sampler.topic_members(topic)
        wrong = members[groups[members] != expected]
        if len(wrong):
            row, found = int(wrong[0]), int(groups[wrong[0]])
            raise ValueError(
                f"Row {row} of the Trainer's training dataset is in group "
                f"{names[found] if names is not None else found!r} but the TopicMixtureSampler has it in topic "
                f"{name!r}; the rows were reordered or filtered after the sampler was built (e.g. by "
                "SFTConfig(shuffle_dataset=True)): build the sampler on the dataset the Trainer trains from."
            )


def topic_eval_dataset(eval_dataset: Dataset | Mapping[str, Dataset], topic_names: list[str]) -> Dataset:
    """Validation documents with `input_ids` and a `group` column whose ids are the sampler's topic ids.

    Takes either one dataset with a `group` column (e.g. `Corpus.validation`) or a mapping topic name ->
    dataset of that topic's documents.
    """
    if isinstance(eval_dataset, Mapping):
        unknown = [name for name in eval_dataset if name not in topic_names]
        if unknown:
            raise ValueError(
                f"The validation sets name topic {unknown[0]!r}, which the sampler does not have; "
                "key them by the sampler's topic_names."
            )
        parts = {name: data.select_columns(["input_ids"]) for name, data in eval_dataset.items()}
        return with_group_column(parts, topic_names)
    missing = [column for column in ("input_ids", GROUP_COLUMN) if column not in eval_dataset.column_names]
    if missing:
        raise ValueError(
            f"The validation set has no {missing[0]!r} column (columns: {eval_dataset.column_names}); give tokenised "
            "documents with a group column, or a mapping topic name -> dataset."
        )
    names = getattr(eval_dataset.features[GROUP_COLUMN], "names", None)
    if names is not None and list(names) != list(topic_names):
        raise ValueError(
            "The validation set's group names differ from the sampler's topic_names; build both from the same "
            "corpus (e.g. load_corpus) so that group ids mean the same topics."
        )
    return eval_dataset


class TopicPerplexityCallback(CheckpointedCallback):
    """Online topic re-weighting (§3.2.1) for a `Trainer` that draws from a `TopicMixtureSampler`.

    Args:
        sampler: the sampler the Trainer trains from (the same object on this rank).
        eval_dataset: per-topic validation documents: a dataset with `input_ids` and `group` columns, or a
            mapping topic name -> dataset with `input_ids`.
        trainer: the Trainer. With it the round metrics reach every `report_to` logger (the callback places
            itself ahead of them); without it, `state.log_history` and the callbacks after this one.
        alpha: step size α of the rule (the paper does not publish its value).
        importance: topic name -> importance w_i (default 1).
        round_steps: optimizer steps per round. Or:
        round_tokens: tokens per round (the paper: ~40B); needs the block length, read from
            `args.max_length` (a `CPTConfig`) or given as `tokens_per_block`.
        partition: topic name -> group key; the rule is applied within each group, keeping each group's
            total share (e.g. topics of one source, so the source ratios of a stage hold). Default: all
            re-weighted topics together, as the paper writes it.
        min_proportion: floor on each proportion, as a fraction of its group (an extension; 0 = off).
        batch_size: validation batch size per process.
    """

    def __init__(
        self,
        sampler: TopicMixtureSampler | None = None,
        eval_dataset: Dataset | Mapping[str, Dataset] | None = None,
        *,
        trainer: Any = None,
        alpha: float = 0.5,
        importance: Mapping[str, float] | None = None,
        round_steps: int | None = None,
        round_tokens: int | None = None,
        tokens_per_block: int | None = None,
        partition: Mapping[str, str] | None = None,
        min_proportion: float = 0.0,
        batch_size: int = 8,
    ) -> None:
        if not isinstance(sampler, TopicMixtureSampler) or eval_dataset is None:
            raise ValueError(
                "TopicPerplexityCallback needs the TopicMixtureSampler the Trainer draws from and per-topic "
                "validation documents (it restores itself from checkpoints, so leave "
                "restore_callback_states_from_checkpoint off)."
            )
        self.importance = check_rule_settings(alpha, importance, sampler.topic_names)
        if (round_steps is None) == (round_tokens is None):
            raise ValueError("Set exactly one of round_steps and round_tokens (the paper: ~40B tokens per round).")
        for field, value in (("round_steps", round_steps), ("round_tokens", round_tokens)):
            if value is not None and value <= 0:
                raise ValueError(f"{field} is {value}; set it to a positive number.")
        super().__init__(trainer)
        self.sampler = sampler
        self.eval_dataset = topic_eval_dataset(eval_dataset, sampler.topic_names)
        self.alpha = alpha
        self.round_steps = round_steps
        self.round_tokens = round_tokens
        self.tokens_per_block = tokens_per_block
        self.partition = dict(partition or {})
        self.min_proportion = min_proportion
        self.batch_size = batch_size
        self.rounds: list[dict[str, Any]] = []

    # ---- checkpoint state ----
    def state(self) -> dict:
        attributes = {"rounds": self.rounds, "sampler_state": self.sampler.state_dict()}
        return {"args": {}, "attributes": attributes | {"pending_metrics": self.pending_metrics}}

    def _restore(self, state: TrainerState) -> bool:
        attributes = self.saved_attributes(state)
        if not attributes.get("rounds"):
            return False
        self.rounds = list(attributes["rounds"])
        self.pending_metrics = dict(attributes.get("pending_metrics", {}))
        self.sampler.load_state_dict(attributes["sampler_state"])
        # The Trainer fast-forwards the data itself (skipping the batches already trained on), so the
        # sampler restarts its epoch: it replays the same positions under the restored weight changes.
        self.sampler.seek(self.sampler.epoch * len(self.sampler))
        logger.info("Topic mixture restored at round %d (step %d).", self.rounds[-1]["round"], self.rounds[-1]["step"])
        return True

    # ---- rounds ----
    def _tokens_per_step(self, args: TrainingArguments) -> int | None:
        block = self.tokens_per_block or getattr(args, "max_length", None)
        if block is None:
            return None
        return block * global_batch_size(args)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        check_training_rows(self.sampler, args, self.trainer, kwargs.get("train_dataloader"))
        tokens_per_step = self._tokens_per_step(args)
        if self.round_tokens is not None:
            if tokens_per_step is None:
                raise ValueError(
                    "round_tokens needs the tokens per block: use a CPTConfig (max_length) or pass tokens_per_block."
                )
            self.round_steps = max(1, round(self.round_tokens / tokens_per_step))
        if args.logging_strategy == "steps" and self.round_steps <= state.logging_steps:
            logger.warning(
                "Rounds every %d steps with logs every %d: the loggers get the last round of each logging window "
                "(topic_mixture.json has them all); log more often than the rounds to see every one.",
                self.round_steps,
                state.logging_steps,
            )
        restored = self._restore(state)
        self.select_validation()
        if restored:
            return
        record = {
            "round": 0,
            "step": state.global_step,
            "position": self.sampler.position,
            "tokens": state.global_step * tokens_per_step if tokens_per_step else None,
            "perplexity": self._measure(kwargs["model"], args),
            "proportions": self.sampler.weights,
            "passes": self.sampler.passes(),
        }
        self._record(record, args, state)

    def select_validation(self) -> None:
        """Keep the validation documents of the topics the rule can move: drawn ones sharing a scope with another.

        Called at the start of training, and again by `CPTTrainer` when a resume replaces the weights (an edited
        mixture, `resume_on_mismatch`).
        """
        weights = self.sampler.weights
        scope_sizes = Counter(self.partition.get(name, "") for name in weights)
        topics = [name for name in weights if scope_sizes[self.partition.get(name, "")] > 1]
        groups = read_group_ids(self.eval_dataset)
        present = {self.sampler.topic_names[i] for i in np.unique(groups)}
        silent = [name for name in topics if name not in present]
        if silent:
            logger.warning("Topics without validation documents keep their share: %s.", ", ".join(silent))
        ids = [self.sampler.topic_names.index(name) for name in topics]
        self._validation = self.eval_dataset.select(np.flatnonzero(np.isin(groups, ids)))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.rounds and state.global_step - self.rounds[-1]["step"] >= self.round_steps:
            self._run_round(args, state, kwargs["model"])

    def _measure(self, model, args: TrainingArguments) -> dict[str, float]:
        table = perplexity_by_group(model, self._validation, self.sampler.topic_names, self.batch_size, bf16=args.bf16)
        return {name: entry["perplexity"] for name, entry in table.items()}

    def _run_round(self, args: TrainingArguments, state: TrainerState, model) -> None:
        perplexity = self._measure(model, args)
        previous = self.rounds[-1]["perplexity"]
        current = self.sampler.weights
        adjusted = [name for name in current if name in previous and name in perplexity]
        groups: dict[str, list[str]] = {}
        for name in adjusted:
            groups.setdefault(self.partition.get(name, ""), []).append(name)
        proportions = dict(current)
        terms: dict[str, dict[str, float]] = {"delta_ppl": {}, "delta": {}, "factor": {}}
        for members in groups.values():
            update = compute_mixture_update(
                {name: current[name] for name in members},
                previous,
                perplexity,
                {name: w for name, w in self.importance.items() if name in members},
                self.alpha,
                self.min_proportion,
            )
            proportions.update(update.proportions)
            for key in terms:
                terms[key].update(getattr(update, key))
        position = next_common_position(self.sampler, global_batch_size(args))
        if _distributed():
            shared = [proportions]
            dist.broadcast_object_list(shared, src=0)
            proportions = shared[0]
        self.sampler.set_weights(proportions, position)
        tokens_per_step = self._tokens_per_step(args)
        record = {
            "round": self.rounds[-1]["round"] + 1,
            "step": state.global_step,
            "position": position,
            "tokens": state.global_step * tokens_per_step if tokens_per_step else None,
            "perplexity": perplexity,
            **terms,
            "proportions": self.sampler.weights,
            "passes": self.sampler.passes(),
        }
        self._record(record, args, state)

    def _record(self, record: dict[str, Any], args: TrainingArguments, state: TrainerState) -> None:
        self.rounds.append(record)
        metrics: dict[str, float] = {"mixture/round": record["round"]}
        for key, label in (
            ("perplexity", "perplexity"),
            ("delta_ppl", "delta_ppl"),
            ("delta", "delta"),
            ("factor", "factor"),
            ("proportions", "proportion"),
            ("passes", "passes"),
        ):
            for name, value in record.get(key, {}).items():
                metrics[f"mixture/{label}/{name}"] = round(value, 6)
        self.queue_metrics(metrics)
        if len(self.rounds) > 1:
            before = self.rounds[-2]["proportions"]
            moved = {name: value - before.get(name, 0.0) for name, value in record["proportions"].items()}
            largest = max(moved, key=lambda name: abs(moved[name]))
            logger.info(
                "Topic mixture round %d at step %d: largest move %s %+.4f (now %.4f).",
                record["round"],
                record["step"],
                largest,
                moved[largest],
                record["proportions"][largest],
            )
        if state.is_world_process_zero:
            self.write_history(args.output_dir)

    def write_history(self, output_dir: str | Path) -> None:
        """`topic_mixture.json` and `topic_mixture.png` in `output_dir`."""
        from hf_cpt.reporting import plot_mixture_history

        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        settings = {"alpha": self.alpha, "importance": self.importance, "round_steps": self.round_steps}
        settings |= {"round_tokens": self.round_tokens, "min_proportion": self.min_proportion}
        payload = {"settings": settings, "rounds": self.rounds}
        # Whole or not at all: a run killed while it writes them keeps the previous round's.
        write_text_atomically(output / f"{HISTORY_NAME}.json", json.dumps(payload, indent=2, ensure_ascii=False))
        with atomic_path(output / f"{HISTORY_NAME}.png") as temporary:
            plot_mixture_history(self.rounds, temporary)

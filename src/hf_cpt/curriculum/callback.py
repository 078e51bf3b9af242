"""`PPLCurriculumCallback`: easy-to-hard order within chosen topics of a `TopicMixtureSampler` (§3.2.2).

At the start of training the callback scores the training blocks of the chosen topics under the model
being trained (or takes scores you computed, e.g. with `hf-cpt score-ppl`), turns them into an order
per topic (`LH` by default: ten equal-count perplexity groups, low to high) and installs it in the
sampler. The mixture across topics is untouched: the sampler still decides which topic each draw
comes from, and the curriculum decides which block of that topic. At every logging step the difficulty
group each topic has reached joins the Trainer's log (`hf_cpt.callbacks`), beside its `loss`. At the
start of training it checks, as `TopicPerplexityCallback` does, that the Trainer trains from the rows the
sampler indexes.

With packed training data the unit of the curriculum is what the sampler draws: a block of
`max_length` tokens of one topic. Scores are written to `curriculum_scores.npy` in the output folder
and named in every checkpoint, so a resumed run installs the very same orders (the model it resumes
has changed, so re-scoring would not give them back).

Re-scoring (`rescore_steps`, an extension beyond the paper, off by default): every `rescore_steps`
optimizer steps the blocks of the current pass that no rank has drawn yet are scored again under the
model as it is then, and re-sorted into the remaining places of the order: the easiest of them go to
the places of the lowest remaining difficulty group, so the group sizes and the logged progression
stay as they were. The new order applies from the first draw no rank has made (the blocks already
drawn keep their places), and each re-scoring is saved to `curriculum_rescore-<step>.npz` and named
in the checkpoints, so a resumed run rebuilds the same sequence of orders.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import TrainerControl, TrainerState, TrainingArguments

from hf_cpt.callbacks import CheckpointedCallback, global_batch_size, is_training_log
from hf_cpt.curriculum.orders import check_curriculum, check_scores, curriculum_order, difficulty_groups
from hf_cpt.curriculum.scoring import score_perplexity
from hf_cpt.data.packing import source_of
from hf_cpt.mixture.callback import check_training_rows
from hf_cpt.mixture.sampler import TopicMixtureSampler
from hf_cpt.utils.distributed import next_common_position
from hf_cpt.utils.io import atomic_path, write_text_atomically

logger = logging.getLogger(__name__)

SCORES_NAME = "curriculum_scores.npy"
PROGRESS_NAME = "curriculum.json"


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class PPLCurriculumCallback(CheckpointedCallback):
    """Curriculum within topics for a `Trainer` drawing from a `TopicMixtureSampler`.

    Add it before `TopicPerplexityCallback` (CPTTrainer does): the orders must be in place when the
    mixture restores the sampler's state on resume.

    Args:
        sampler: the sampler the Trainer trains from.
        train_dataset: the training blocks the sampler indexes (a `input_ids` column).
        order: one of `LH` (the paper), `HL`, `RM`, `PB`, `BP`, `PBP`.
        topics: topic names, or source names standing for all their topics, to order; default: every
            topic with a positive weight. The paper orders its Chinese data in stage 1.
        scores: precomputed perplexity per training block (NaN allowed outside the ordered topics);
            default: scored at the start of training with the model being trained.
        disciplines: per-block discipline labels, for `PB`, `BP` and `PBP`.
        seed: shuffles blocks within a difficulty group.
        num_difficulty_groups: perplexity groups each topic's blocks are cut into (the paper: 10).
        trainer: the Trainer. With it the difficulty groups reach every `report_to` logger (the callback
            places itself ahead of them); without it, `state.log_history` and the callbacks after this one.
        batch_tokens: token budget of a scoring batch.
        rescore_steps: re-score the blocks not drawn yet every this many optimizer steps (`LH` and `HL`
            only; an extension beyond the paper, off by default).
    """

    def __init__(
        self,
        sampler: TopicMixtureSampler | None = None,
        train_dataset: Dataset | None = None,
        *,
        order: str = "LH",
        topics: Sequence[str] | None = None,
        scores: Sequence[float] | np.ndarray | None = None,
        disciplines: Sequence[str] | None = None,
        seed: int = 0,
        num_difficulty_groups: int = 10,
        trainer: Any = None,
        batch_tokens: int = 8192,
        rescore_steps: int | None = None,
    ) -> None:
        if not isinstance(sampler, TopicMixtureSampler) or train_dataset is None:
            raise ValueError(
                "PPLCurriculumCallback needs the TopicMixtureSampler the Trainer draws from and its training "
                "dataset (it restores itself from checkpoints, so leave restore_callback_states_from_checkpoint off)."
            )
        check_curriculum(order, rescore_steps)
        if len(train_dataset) != sampler.num_documents:
            raise ValueError(
                f"train_dataset has {len(train_dataset)} rows but the sampler indexes {sampler.num_documents}; "
                "give the dataset the sampler was built on."
            )
        super().__init__(trainer)
        self.sampler = sampler
        self.train_dataset = train_dataset
        self.order = order
        self.topics = self._resolve_topics(topics)
        self.scores = None if scores is None else np.asarray(scores, dtype=np.float64)
        if self.scores is not None and len(self.scores) != sampler.num_documents:
            raise ValueError(
                f"scores has {len(self.scores)} values for {sampler.num_documents} training blocks; score exactly "
                "the blocks of the training dataset."
            )
        self.disciplines = disciplines
        self.seed = seed
        self.num_difficulty_groups = num_difficulty_groups
        self.batch_tokens = batch_tokens
        self.rescore_steps = rescore_steps
        self.scores_path: str | None = None
        self.rescores: list[dict[str, Any]] = []  # every re-scoring: step, draws per topic, file, digest
        self.progress: list[dict[str, Any]] = []
        self._group_in_order: dict[str, np.ndarray] = {}  # difficulty group of every place of the order
        self._first_pass_places: dict[str, np.ndarray] = {}  # the same for the first pass (unexcluded blocks)

    def _resolve_topics(self, names: Sequence[str] | None) -> list[str]:
        drawn = list(self.sampler.weights)
        if names is None:
            return drawn
        topics = [name for name in self.sampler.topic_names if name in names or source_of(name) in names]
        unknown = [name for name in names if not any(name in (topic, source_of(topic)) for topic in topics)]
        if unknown:
            raise ValueError(
                f"topics names {unknown[0]!r}, which is neither a topic nor a source of the sampler; "
                "name topics as in its topic_names, or their sources."
            )
        return [name for name in topics if name in drawn]

    # ---- checkpoint state ----
    def state(self) -> dict:
        digest = _digest(self.scores) if self.scores is not None else None
        attributes = {
            "scores_path": self.scores_path,
            "scores_digest": digest,
            "rescores": self.rescores,
            "progress": self.progress,
        }
        return {"args": {}, "attributes": attributes}

    def _restore(self, state: TrainerState) -> bool:
        attributes = self.saved_attributes(state)
        if not attributes.get("scores_path"):  # a fresh run (its state holds no scores file yet)
            return False
        if self.scores is None:
            path = attributes.get("scores_path")
            if not path or not Path(path).is_file():
                raise ValueError(
                    f"The checkpoint's curriculum scores file {path!r} is missing; resume in the run's output "
                    "folder or pass the same scores= again."
                )
            self.scores, self.scores_path = np.load(path), path
        if _digest(self.scores) != attributes["scores_digest"]:
            raise ValueError(
                "The curriculum scores differ from those the checkpoint was trained with; resume with the same scores."
            )
        self.rescores = list(attributes.get("rescores", []))
        self.progress = list(attributes.get("progress", []))
        return True

    # ---- training events ----
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        check_training_rows(self.sampler, args, self.trainer, kwargs.get("train_dataloader"))
        restored = self._restore(state)
        if self.scores is None and self.order in ("LH", "HL"):
            self.scores = self._score(kwargs["model"], kwargs.get("processing_class"), args)
        if self.scores is not None and not restored:
            self.scores_path = str(Path(args.output_dir) / SCORES_NAME)
            if state.is_world_process_zero:
                with atomic_path(self.scores_path) as temporary:
                    np.save(temporary, self.scores)
        self._install()
        for rescore in self.rescores:
            self._replay_rescore(rescore)

    def _score(self, model, tokenizer, args: TrainingArguments) -> np.ndarray:
        """Perplexity of the blocks of the ordered topics (NaN elsewhere), sharded across ranks."""
        members = np.concatenate([self.sampler.topic_members(topic) for topic in self.topics])
        scores = np.full(self.sampler.num_documents, np.nan)
        scores[members] = self._score_blocks(members, model, tokenizer, args, "curriculum_shards")
        return scores

    def _score_blocks(self, blocks: np.ndarray, model, tokenizer, args: TrainingArguments, folder: str) -> np.ndarray:
        return score_perplexity(
            model,
            tokenizer,
            self.train_dataset.select(blocks).select_columns(["input_ids"]),
            text_column="input_ids",
            batch_tokens=self.batch_tokens,
            bf16=bool(args.bf16),
            output_dir=Path(args.output_dir) / folder,
        )

    def _install(self) -> None:
        for topic in self.topics:
            members = self.sampler.topic_members(topic)
            topic_scores = None if self.scores is None else check_scores(self.scores[members])
            if self.order == "RM" and topic_scores is None:
                topic_scores = np.zeros(len(members))  # a random order needs only the count
            disciplines = None if self.disciplines is None else np.asarray(self.disciplines)[members]
            permutation = curriculum_order(self.order, topic_scores, disciplines, self.seed, self.num_difficulty_groups)
            self.sampler.set_topic_order(topic, members[permutation])
            if self.scores is not None:
                self._group_in_order[topic] = difficulty_groups(topic_scores, self.num_difficulty_groups)[permutation]
                # The first pass skips blocks an earlier stage drew: its places are the order's others.
                first_pass = ~np.isin(members[permutation], self.sampler.excluded)
                self._first_pass_places[topic] = self._group_in_order[topic][first_pass]
        logger.info("Curriculum %s installed in %d topics: %s.", self.order, len(self.topics), ", ".join(self.topics))

    # ---- re-scoring (an extension beyond the paper) ----
    def _pass_places(self, topic: str, draw: int) -> tuple[int, np.ndarray]:
        """The first draw number of the pass holding `draw`, and the difficulty group of each place of that pass."""
        start, _ = self.sampler.topic_pass(topic, draw)
        return start, self._first_pass_places[topic] if start == 0 else self._group_in_order[topic]

    def _unseen(self, topic: str, draws: int) -> tuple[np.ndarray, np.ndarray]:
        """The blocks of the topic's current pass drawn before draw `draws`, and those still to come, in order."""
        start, stop = self.sampler.topic_pass(topic, draws)
        return self.sampler.topic_draws(topic, start, draws), self.sampler.topic_draws(topic, draws, stop)

    def _rescore(self, args: TrainingArguments, state: TrainerState, model, tokenizer) -> None:
        """Score the blocks no rank has drawn yet under the current model and re-sort them (all ranks)."""
        position = next_common_position(self.sampler, global_batch_size(args))
        drawn = self.sampler.draws_per_topic(position)
        draws = {topic: drawn.get(topic, 0) for topic in self.topics}
        unseen = np.concatenate([self._unseen(topic, draws[topic])[1] for topic in self.topics])
        scores = self._score_blocks(unseen, model, tokenizer, args, f"curriculum_shards/rescore-{state.global_step}")
        rescore = {
            "step": state.global_step,
            "position": position,
            "draws": draws,
            "path": str(Path(args.output_dir) / f"curriculum_rescore-{state.global_step}.npz"),
            "digest": _digest(unseen, scores),
        }
        if state.is_world_process_zero:
            with atomic_path(rescore["path"]) as temporary:
                np.savez(temporary, blocks=unseen, scores=scores)
        self._apply_rescore(rescore, dict(zip(unseen.tolist(), scores.tolist(), strict=True)))
        self.rescores.append(rescore)
        logger.info("Curriculum re-scored %d blocks not drawn yet at step %d.", len(unseen), state.global_step)

    def _replay_rescore(self, rescore: dict[str, Any]) -> None:
        """Rebuild a re-scoring of the run being resumed from its saved scores."""
        path = rescore["path"]
        if not Path(path).is_file():
            raise ValueError(
                f"The checkpoint's curriculum re-scoring file {path!r} is missing; resume in the run's output folder."
            )
        with np.load(path) as saved:
            blocks, scores = saved["blocks"], saved["scores"]
        if _digest(blocks, scores) != rescore["digest"]:
            raise ValueError(f"The curriculum re-scoring file {path!r} differs from the one the run saved.")
        self._apply_rescore(rescore, dict(zip(blocks.tolist(), scores.tolist(), strict=True)))

    def _apply_rescore(self, rescore: dict[str, Any], scores: dict[int, float]) -> None:
        """Re-sort each topic's blocks still to come of its pass by their new scores into the remaining places.

        The places keep their difficulty groups: under `LH` the easiest remaining blocks fill the places of
        the lowest remaining group; blocks are shuffled by seed within a group, as at the start.
        """
        rng = np.random.default_rng([self.seed, rescore["step"]])
        for topic in self.topics:
            draws = rescore["draws"][topic]
            seen, upcoming = self._unseen(topic, draws)
            new_scores = check_scores([scores[block] for block in upcoming.tolist()])
            easiest_first = np.argsort(new_scores if self.order == "LH" else -new_scores, kind="stable")
            ranked = upcoming[easiest_first]
            places = self._pass_places(topic, draws)[1][len(seen) :]
            for group in np.unique(places):
                slots = np.flatnonzero(places == group)
                ranked[slots] = rng.permutation(ranked[slots])
            # In a first pass that skips excluded blocks, those keep the last places of the order.
            rest = np.setdiff1d(self.sampler.topic_members(topic), np.concatenate([seen, upcoming]))
            self.sampler.set_topic_order(topic, np.concatenate([seen, ranked, rest]), from_draw=draws)

    def current_groups(self, position: int) -> dict[str, int]:
        """The difficulty group of the last block each ordered topic had drawn before `position`."""
        draws = self.sampler.draws_per_topic(position)
        groups = {}
        for topic in self._group_in_order:
            if draws.get(topic, 0) > 0:
                start, places = self._pass_places(topic, draws[topic] - 1)
                groups[topic] = int(places[draws[topic] - 1 - start])
        return groups

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.rescore_steps and state.global_step % self.rescore_steps == 0 and state.global_step < state.max_steps:
            self._rescore(args, state, kwargs["model"], kwargs.get("processing_class"))

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if is_training_log(logs) and self._group_in_order:
            self._record_progress(args, state)
        super().on_log(args, state, control, logs=logs, **kwargs)

    def _record_progress(self, args: TrainingArguments, state: TrainerState) -> None:
        """The difficulty group each ordered topic has reached at this logging step: logged and kept."""
        # Epochs continue the sampler's stream.
        groups = self.current_groups(state.global_step * global_batch_size(args))
        self.progress.append({"step": state.global_step, "groups": groups})
        self.queue_metrics({f"curriculum/group/{topic}": group for topic, group in groups.items()})
        if state.is_world_process_zero:
            write_text_atomically(
                Path(args.output_dir) / PROGRESS_NAME, json.dumps(self.summary(), indent=2, ensure_ascii=False)
            )

    def summary(self) -> dict[str, Any]:
        """The curriculum and the difficulty group each topic reached at every logging step (`curriculum.json`)."""
        return {
            "order": self.order,
            "topics": self.topics,
            "num_difficulty_groups": self.num_difficulty_groups,
            "progress": self.progress,
        }

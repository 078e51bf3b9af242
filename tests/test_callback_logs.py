"""The mixture and curriculum callbacks add their metrics to the Trainer's logs and never remove the Trainer's own;
they fail at the start of training when the Trainer trains from other rows than the sampler indexes."""

import pytest
from conftest import make_model, micro_config
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
from trl import SFTConfig, SFTTrainer

from hf_cpt import CPTTrainer, PPLCurriculumCallback, TopicPerplexityCallback, load_corpus, plan_stage

MAX_LENGTH = 32
SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
RATIOS = {"web-en": 0.4, "book-en": 0.2, "web-cn": 0.3, "synthesis-en": 0.1}
CHINESE = "web-cn/Philosophy"
STEPS, LOGGING_STEPS, ROUND_STEPS = 6, 2, 3  # a round at step 3, between two logging steps
TRAINER_KEYS = ("loss", "grad_norm", "learning_rate")


@pytest.fixture(scope="module")
def corpus(corpus_path, tokenizer):
    return load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])


def stage_sampler(corpus):
    return plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * STEPS, 4, seed=3)


def with_sampler(trainer_class: type[Trainer], sampler) -> type[Trainer]:
    """A subclass of `trainer_class` that draws its training order from `sampler`."""

    class MixtureTrainer(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            return sampler

    return MixtureTrainer


def add_mixture_and_curriculum(trainer: Trainer, sampler, corpus) -> None:
    trainer.add_callback(
        PPLCurriculumCallback(sampler, corpus.train, topics=["web-cn"], num_difficulty_groups=4, trainer=trainer)
    )
    trainer.add_callback(
        TopicPerplexityCallback(sampler, corpus.validation, trainer=trainer, alpha=0.5, round_steps=ROUND_STEPS)
    )


def plain_arguments(output_dir, **overrides) -> dict:
    values = dict(
        output_dir=str(output_dir), per_device_train_batch_size=4, max_steps=STEPS, logging_steps=LOGGING_STEPS,
        use_cpu=True, report_to="none", save_strategy="no", learning_rate=3e-3, seed=0,
    )  # fmt: skip
    return values | overrides


def assert_trainer_and_callback_metrics_at_every_logging_step(log_history, extra_keys=()) -> None:
    logs = [entry for entry in log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [2, 4, 6]
    for entry in logs:
        for key in (*TRAINER_KEYS, *extra_keys, f"curriculum/group/{CHINESE}"):
            assert key in entry, f"{key} missing at step {entry['step']}"
    # Round 0 (at the start) goes out at step 2, round 1 (step 3) at step 4, round 2 (step 6) at step 6.
    assert [entry["mixture/round"] for entry in logs] == [0, 1, 2]
    assert all(f"mixture/proportion/{CHINESE}" in entry for entry in logs)
    assert sum("mixture/round" in entry for entry in log_history) == 3  # each round once, in no other entry


def cpt_trainer(corpus, tokenizer, output_dir, **overrides) -> CPTTrainer:
    args = micro_config(
        output_dir, max_steps=STEPS, logging_steps=LOGGING_STEPS, learning_rate=3e-3, warmup_steps=0,
        mixture_alpha=0.5, mixture_round_steps=ROUND_STEPS, curriculum_order="LH", curriculum_topics=["web-cn"],
        curriculum_num_difficulty_groups=4, **overrides,
    )  # fmt: skip
    return CPTTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train,
        train_sampler=stage_sampler(corpus),
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation,
    )


def test_cpt_trainer_keeps_its_loss_and_per_group_logs_and_every_logger_gets_the_callback_metrics(
    tmp_path, corpus, tokenizer
):
    trainer = cpt_trainer(corpus, tokenizer, tmp_path, report_to="tensorboard")
    trainer.train()
    assert_trainer_and_callback_metrics_at_every_logging_step(
        trainer.state.log_history, extra_keys=[f"loss/{CHINESE}", f"tokens/{CHINESE}", "loss/web-en/Law and Policy"]
    )
    # TensorBoard (a `report_to` logger, which the handler calls before user callbacks) got them too.
    (events,) = tmp_path.rglob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload()
    for tag in ("train/loss", f"train/loss/{CHINESE}", "train/mixture/round", f"train/curriculum/group/{CHINESE}"):
        assert [event.step for event in scalars.Scalars(tag)] == [2, 4, 6], tag
    assert [event.value for event in scalars.Scalars("train/mixture/round")] == [0, 1, 2]


def test_a_round_queued_when_a_checkpoint_is_saved_goes_out_after_resuming(tmp_path, corpus, tokenizer):
    # Step 3 runs a round and saves a checkpoint before the next logging step (4) could carry it.
    cpt_trainer(corpus, tokenizer, tmp_path / "full", save_strategy="steps", save_steps=3).train()
    resumed = cpt_trainer(corpus, tokenizer, tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    logs = {entry["step"]: entry for entry in resumed.state.log_history if "loss" in entry}
    assert (logs[4]["mixture/round"], logs[6]["mixture/round"]) == (1, 2)


class RecordingReporter(TrainerCallback):
    """Stands where the `report_to` integrations stand (right after `DefaultFlowCallback`) and keeps what it gets."""

    def __init__(self):
        self.received: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.received.append({**logs, "step": state.global_step})


def test_plain_trainer_with_default_data_collator_logs_its_loss_and_the_callback_metrics(tmp_path, corpus, tokenizer):
    sampler = stage_sampler(corpus)
    trainer = with_sampler(Trainer, sampler)(
        model=make_model(len(tokenizer)),
        args=TrainingArguments(**plain_arguments(tmp_path)),
        train_dataset=corpus.train,  # input_ids, labels, group: the Trainer drops the group column itself
        data_collator=default_data_collator,
    )
    reporter = RecordingReporter()
    trainer.callback_handler.callbacks.insert(1, reporter)
    add_mixture_and_curriculum(trainer, sampler, corpus)
    trainer.train()
    assert_trainer_and_callback_metrics_at_every_logging_step(trainer.state.log_history)
    assert_trainer_and_callback_metrics_at_every_logging_step(reporter.received)


def test_trl_sft_trainer_logs_its_loss_and_the_callback_metrics(tmp_path, corpus, tokenizer):
    sampler = stage_sampler(corpus)
    trainer = with_sampler(SFTTrainer, sampler)(
        model=make_model(len(tokenizer)),
        args=SFTConfig(**plain_arguments(tmp_path), packing=False, bf16=False),
        train_dataset=corpus.train,
        processing_class=tokenizer,
    )
    add_mixture_and_curriculum(trainer, sampler, corpus)
    trainer.train()
    # TRL's own metrics stay too.
    assert_trainer_and_callback_metrics_at_every_logging_step(trainer.state.log_history, extra_keys=["num_tokens"])


def test_a_round_after_the_last_logging_step_goes_out_with_the_end_of_training_summary(tmp_path, corpus, tokenizer):
    sampler = stage_sampler(corpus)
    trainer = with_sampler(Trainer, sampler)(
        model=make_model(len(tokenizer)),
        args=TrainingArguments(**plain_arguments(tmp_path, logging_steps=4)),
        train_dataset=corpus.train,
        data_collator=default_data_collator,
    )
    callback = TopicPerplexityCallback(sampler, corpus.validation, alpha=0.5, round_steps=6)  # no trainer given
    trainer.add_callback(callback)
    trainer.train()
    *_, last_log, summary = trainer.state.log_history
    assert (last_log["step"], last_log["mixture/round"]) == (4, 0) and "loss" in last_log
    assert (summary["step"], summary["mixture/round"]) == (6, 1) and "train_loss" in summary
    assert callback.pending_metrics == {}


def test_sft_trainer_packing_over_a_sampler_of_unpacked_rows_fails_at_start_naming_trl_packing(
    tmp_path, corpus, tokenizer
):
    sampler = stage_sampler(corpus)
    trainer = with_sampler(SFTTrainer, sampler)(
        model=make_model(len(tokenizer)),
        args=SFTConfig(
            **plain_arguments(tmp_path), packing=True, packing_strategy="wrapped", max_length=16, bf16=False
        ),
        train_dataset=corpus.train,
        processing_class=tokenizer,
    )
    rows = len(trainer.train_dataset)
    assert rows != len(corpus.train)  # TRL re-packed the 32-token blocks into 16-token rows
    add_mixture_and_curriculum(trainer, sampler, corpus)
    expected = (
        f"The Trainer's training dataset has {rows} rows but the TopicMixtureSampler indexes {len(corpus.train)}; "
        r"TRL's SFTTrainer re-packed them \(packing=True\): set packing=False in its SFTConfig, or build the sampler "
        r"on the packed dataset \(trainer.train_dataset\)."
    )
    with pytest.raises(ValueError, match=expected):
        trainer.train()
    assert trainer.state.global_step == 0


def test_rows_reordered_after_the_sampler_was_built_fail_at_start(tmp_path, corpus, tokenizer):
    sampler = stage_sampler(corpus)
    trainer = with_sampler(Trainer, sampler)(
        model=make_model(len(tokenizer)),
        args=TrainingArguments(**plain_arguments(tmp_path)),
        train_dataset=corpus.train.shuffle(seed=0),
        data_collator=default_data_collator,
    )
    trainer.add_callback(TopicPerplexityCallback(sampler, corpus.validation, trainer=trainer, alpha=0.5, round_steps=3))
    with pytest.raises(ValueError, match=r"Row \d+ of the Trainer's training dataset is in group '.+' but the "):
        trainer.train()
    assert trainer.state.global_step == 0

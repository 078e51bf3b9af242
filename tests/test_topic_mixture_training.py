"""The topic mixture in training: CPTTrainer, a plain Trainer subclass, and a plain accelerate loop."""

import json
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from conftest import RecordingTrainer, make_model, micro_config
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerControl, TrainerState, TrainingArguments

from hf_cpt import CPTConfig, CPTTrainer, TopicMixtureSampler, TopicPerplexityCallback, update_mixture
from hf_cpt.data import load_corpus
from hf_cpt.mixture import plan_stage
from hf_cpt.perplexity import perplexity_by_group
from hf_cpt.trainer import collate_blocks

MAX_LENGTH = 32
SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
RATIOS = {"web-en": 0.5, "book-en": 0.2, "web-cn": 0.2, "synthesis-en": 0.1}
WEB_EN = ["web-en/Law and Policy", "web-en/Medicine and Health"]


@pytest.fixture(scope="module")
def corpus(corpus_path, tokenizer):
    return load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])


def config(output_dir, **overrides) -> CPTConfig:
    values = dict(learning_rate=3e-3, warmup_steps=0, mixture_alpha=0.5, mixture_round_steps=2)
    return micro_config(output_dir, **{**values, **overrides})


def mixture_trainer(corpus, tokenizer, output_dir, steps: int = 8, **overrides) -> RecordingTrainer:
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * steps, 4, seed=3)
    return RecordingTrainer(
        model=make_model(len(tokenizer)),
        args=config(output_dir, **overrides),
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation,
    )


def test_cpt_trainer_reweights_topics_by_the_papers_rule_every_round(tmp_path, corpus, tokenizer):
    trainer = mixture_trainer(corpus, tokenizer, tmp_path, logging_steps=1)  # a log between every two rounds
    initial = trainer.train_sampler.weights
    trainer.train()
    history = json.loads((tmp_path / "topic_mixture.json").read_text())
    rounds = history["rounds"]
    assert [entry["round"] for entry in rounds] == [0, 1, 2, 3, 4]
    assert [entry["step"] for entry in rounds] == [0, 2, 4, 6, 8]
    assert (tmp_path / "topic_mixture.png").stat().st_size > 0
    # Scope "source": only the two web-en topics share a source, so only they are measured and moved.
    assert set(rounds[0]["perplexity"]) == set(WEB_EN)
    for previous, entry in zip(rounds, rounds[1:], strict=False):
        expected = update_mixture(
            {name: previous["proportions"][name] for name in WEB_EN},
            previous["perplexity"],
            entry["perplexity"],
            alpha=0.5,
        )
        assert {name: entry["proportions"][name] for name in WEB_EN} == pytest.approx(expected)
        assert sum(entry["proportions"][name] for name in WEB_EN) == pytest.approx(RATIOS["web-en"])
        assert entry["proportions"]["book-en"] == pytest.approx(initial["book-en"])
    assert rounds[1]["proportions"] != pytest.approx(rounds[0]["proportions"])  # the weights did move
    # Each change applies from an optimizer-step boundary (4 blocks a step) after the blocks trained on.
    positions = [position for position, _ in trainer.train_sampler.history]
    assert positions[0] == 0
    assert all(p % 4 == 0 and p >= 4 * step for p, step in zip(positions[1:], (2, 4, 6, 8), strict=True))
    # The Trainer's loggers got every term of the rule, each round with the Trainer's next log.
    logged = [entry for entry in trainer.state.log_history if "mixture/round" in entry]
    assert [entry["mixture/round"] for entry in logged] == [0, 1, 2, 3, 4]
    assert [entry["step"] for entry in logged] == [1, 2, 4, 6, 8]
    assert all("loss" in entry and f"loss/{WEB_EN[0]}" in entry for entry in logged)
    for key in ("perplexity", "delta_ppl", "delta", "factor", "proportion", "passes"):
        assert f"mixture/{key}/{WEB_EN[0]}" in logged[1]
    # The data recipe carries the weight history.
    assert [entry["position"] for entry in trainer.data_recipe()["weight_history"]] == positions


def test_round_perplexity_is_the_token_weighted_mean_nll(tmp_path, corpus, tokenizer):
    trainer = mixture_trainer(corpus, tokenizer, tmp_path, steps=2)
    model = trainer.model
    trainer.train()
    measured = trainer.mixture_callback.rounds[-1]["perplexity"]
    names = corpus.group_names
    for name in WEB_EN:
        nll, tokens = 0.0, 0
        for row in corpus.validation:
            if names[row["group"]] == name:
                ids = torch.tensor([row["input_ids"]])
                with torch.no_grad():
                    loss = model(input_ids=ids, labels=ids).loss.item()
                nll += loss * (ids.shape[1] - 1)
                tokens += ids.shape[1] - 1
        assert measured[name] == pytest.approx(math.exp(nll / tokens), rel=1e-5)


def test_resumed_run_sees_the_same_blocks_and_the_same_mixture_history(tmp_path, corpus, tokenizer):
    full = mixture_trainer(corpus, tokenizer, tmp_path / "full", save_strategy="steps", save_steps=3)
    full.train()
    # A restarted process builds everything anew, then resumes from the checkpoint of step 3: one
    # weight change happened before it (step 2), two happen after it (steps 4 and 6), plus step 8.
    resumed = mixture_trainer(corpus, tokenizer, tmp_path / "resumed")
    resumed.model.load_state_dict(make_model(len(tokenizer), seed=1).state_dict())
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed.seen == full.seen[3 * 4 :]
    assert resumed.mixture_callback.rounds == full.mixture_callback.rounds
    assert resumed.train_sampler.history == full.train_sampler.history


def test_plain_trainer_subclass_with_the_sampler_and_callback(tmp_path, corpus, tokenizer):
    sampler = TopicMixtureSampler.from_dataset(
        corpus.train, {name: 1.0 for name in corpus.group_names}, num_samples=32, seed=1
    )

    class MixtureTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return sampler

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=8, use_cpu=True, report_to="none",
        save_strategy="no", learning_rate=3e-3, logging_steps=4,
    )  # fmt: skip
    trainer = MixtureTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train.remove_columns("group"),  # the model sees tokens only
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    callback = TopicPerplexityCallback(sampler, corpus.validation, trainer=trainer, alpha=0.5, round_steps=4)
    trainer.add_callback(callback)
    trainer.train()
    assert [entry["round"] for entry in callback.rounds] == [0, 1, 2]
    assert set(callback.rounds[0]["perplexity"]) == set(corpus.group_names)  # one scope: every group moves
    assert len(sampler.history) == 3
    assert any(key.startswith("mixture/proportion/") for key in trainer.state.log_history[-2])


def test_plain_accelerate_loop_with_the_sampler_checkpointed_and_resumed(tmp_path, corpus, tokenizer):
    names = corpus.group_names
    web_en_ids = {names.index(name) for name in WEB_EN}

    def build():
        """What a (re)started training script sets up: accelerator, sampler, model, optimizer, loader."""
        accelerator = Accelerator(cpu=True)
        sampler = TopicMixtureSampler.from_dataset(corpus.train, dict.fromkeys(WEB_EN, 1.0), num_samples=40)
        model = make_model(len(tokenizer))
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        loader = DataLoader(corpus.train, batch_size=4, sampler=sampler, collate_fn=collate_blocks)
        accelerator.register_for_checkpointing(sampler)
        return (accelerator, sampler, *accelerator.prepare(model, optimizer, loader))

    def train(accelerator, sampler, model, optimizer, loader, first_step=1, save_at=None):
        """The loop of docs/topic_mixture.md: a round every 3 steps. Returns the blocks trained on."""

        def topic_perplexity():
            table = perplexity_by_group(accelerator.unwrap_model(model), corpus.validation, names)
            return {name: table[name]["perplexity"] for name in WEB_EN}

        previous = topic_perplexity() if first_step == 1 else json.loads((tmp_path / "ppl.json").read_text())
        trained = []
        for step, batch in enumerate(loader, start=first_step):
            trained.extend(batch["input_ids"].tolist())
            assert set(batch.pop("group").tolist()) <= web_en_ids
            accelerator.backward(model(**batch).loss)
            optimizer.step()
            optimizer.zero_grad()
            if step % 3 == 0:
                now = topic_perplexity()
                sampler.set_weights(update_mixture(sampler.weights, previous, now, alpha=0.5))
                previous = now
            if step == save_at:
                accelerator.save_state(str(tmp_path / "state"))
                (tmp_path / "ppl.json").write_text(json.dumps(previous))
        return trained

    accelerator, sampler, *parts = build()
    trained = train(accelerator, sampler, *parts, save_at=4)
    assert len(sampler.history) == 4  # the initial weights and rounds at steps 3, 6 and 9
    # What was trained on is the sampler's global order under its recorded weight changes.
    replay = TopicMixtureSampler.from_dataset(corpus.train, dict.fromkeys(WEB_EN, 1.0), num_samples=40)
    for position, weights in sampler.history[1:]:
        replay.set_weights(weights, position)
    assert trained == [corpus.train[int(i)]["input_ids"] for i in replay.indices(0, 40)]

    # A restarted script restores everything, rewinds the sampler and skips the 4 steps trained on.
    accelerator, sampler, model, optimizer, loader = build()
    accelerator.load_state(str(tmp_path / "state"))
    sampler.seek(0)
    resumed = train(accelerator, sampler, model, optimizer, accelerator.skip_first_batches(loader, 4), first_step=5)
    assert resumed == trained[4 * 4 :]


def test_topic_mixture_settings_fail_at_start(tmp_path, corpus, tokenizer):
    with pytest.raises(ValueError, match="mixture_alpha is -1.0; set the step size to a number >= 0"):
        config(tmp_path, mixture_alpha=-1.0)
    with pytest.raises(ValueError, match="set exactly one of mixture_round_tokens .* and mixture_round_steps"):
        config(tmp_path, mixture_round_steps=None)
    static = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 2, 4)
    with pytest.raises(ValueError, match="mixture_alpha is set but topic_eval_dataset is missing"):
        CPTTrainer(make_model(len(tokenizer)), config(tmp_path), train_dataset=corpus.train, train_sampler=static)
    wrong_length = TopicMixtureSampler(np.zeros(5, dtype=np.int64), {0: 1.0})
    with pytest.raises(ValueError, match="train_sampler has topics for 5 documents but train_dataset has"):
        CPTTrainer(
            make_model(len(tokenizer)),
            config(tmp_path, mixture_alpha=None),
            train_dataset=corpus.train,
            train_sampler=wrong_length,
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha": -1.0}, r"alpha is -1.0; set the step size to a number >= 0"),
        ({"alpha": 1.0}, r"alpha x importance is 1.0 for topic 'web-en/Law and Policy'; keep it below 1"),
        ({"alpha": 0.5, "importance": {"web-xx": 1.0}}, r"importance names topic 'web-xx', which is not among"),
        ({"alpha": 0.5, "importance": {WEB_EN[0]: -1.0}}, r"importance\['web-en/Law and Policy'\] is -1.0; set it"),
    ],
)
def test_the_callback_refuses_the_settings_update_mixture_refuses(corpus, settings, message):
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 2, 4)
    with pytest.raises(ValueError, match=message):
        TopicPerplexityCallback(sampler, corpus.validation, round_steps=2, **settings)


def test_scope_by_source_reweights_each_sources_topics_among_themselves(tmp_path):
    names = ["a/x", "a/y", "b/x", "b/y"]
    rng = np.random.default_rng(0)
    documents = [rng.integers(3, 60, size=int(rng.integers(10, 30))).tolist() for _ in range(16)]
    validation = Dataset.from_dict({"input_ids": documents, "group": [i % 4 for i in range(16)]})
    sampler = TopicMixtureSampler(
        np.arange(40) % 4, {"a/x": 0.1, "a/y": 0.3, "b/x": 0.2, "b/y": 0.4}, topic_names=names
    )
    callback = TopicPerplexityCallback(
        sampler, validation, alpha=0.5, round_steps=1, partition={name: name[0] for name in names}
    )
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, use_cpu=True, report_to="none")
    state, control, model = TrainerState(), TrainerControl(), make_model(64)
    callback.on_train_begin(args, state, control, model=model)
    iterator = iter(sampler)
    for _ in range(4):  # one step of 4 blocks drawn
        next(iterator)
    with torch.no_grad():  # the model changes over the round, differently for each topic's tokens
        model.lm_head.weight.add_(torch.randn_like(model.lm_head.weight))
    state.global_step = 1
    callback.on_step_end(args, state, control, model=model)
    before, after = callback.rounds
    for scope in ("a", "b"):
        topics = [name for name in names if name.startswith(scope)]
        expected = update_mixture(
            {name: before["proportions"][name] for name in topics}, before["perplexity"], after["perplexity"], alpha=0.5
        )
        assert {name: after["proportions"][name] for name in topics} == pytest.approx(expected)
        assert after["proportions"][topics[0]] != pytest.approx(before["proportions"][topics[0]])
    assert sampler.history[1][0] == 4  # the first step boundary not drawn yet

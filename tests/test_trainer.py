"""CPTTrainer: the paper's training setup, per-group accounting, the data recipe, and exact resume."""

import dataclasses
import json

import pytest
import torch
from conftest import RecordingTrainer, make_model, micro_config
from huggingface_hub import ModelCard
from transformers import TrainingArguments

from hf_cpt import CPTConfig, CPTTrainer
from hf_cpt.data import load_corpus, source_of
from hf_cpt.mixture import plan_stage
from hf_cpt.trainer import DATA_RECIPE_NAME, collate_blocks

MAX_LENGTH = 32
SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
RATIOS = {"web-en": 0.5, "book-en": 0.2, "web-cn": 0.2, "synthesis-en": 0.1}


@pytest.fixture(scope="module")
def corpus(corpus_path, tokenizer):
    return load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])


def config(output_dir, **overrides) -> CPTConfig:
    return micro_config(output_dir, **{"warmup_steps": 2, **overrides})


def test_defaults_are_the_papers_training_setup(tmp_path):
    args = CPTConfig(output_dir=str(tmp_path), report_to="none")
    assert (args.adam_beta1, args.adam_beta2) == (0.9, 0.95)
    assert args.max_grad_norm == 1.0
    assert args.learning_rate == 1e-5 and args.warmup_start_lr == 1e-7
    assert args.lr_scheduler_type == "warmup_stable_decay" and args.decay_ratio == 0.0
    assert args.activation_checkpointing is True


def test_warmup_tokens_become_steps(tmp_path):
    args = config(tmp_path, warmup_tokens=10 * MAX_LENGTH * 4 + 1)
    assert args.tokens_per_step == MAX_LENGTH * 4
    assert args.get_warmup_steps(100) == 11


def test_loss_equals_the_models_own_causal_lm_loss(tmp_path, tokenizer, corpus):
    model = make_model(len(tokenizer))
    trainer = CPTTrainer(model=model, args=config(tmp_path), train_dataset=corpus.train, processing_class=tokenizer)
    batch = collate_blocks([corpus.train[i] for i in range(4)])
    reference = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    loss = trainer.compute_loss(model, dict(batch))
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_trainer_warms_up_from_the_floor(tmp_path, tokenizer, corpus):
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 4, 4)
    args = config(tmp_path, logging_steps=1, learning_rate=1e-5, warmup_start_lr=1e-7, warmup_steps=2)
    trainer = CPTTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
    )
    trainer.train()
    rates = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert rates == pytest.approx([1e-7, 1e-7 + 0.5 * (1e-5 - 1e-7), 1e-5, 1e-5])


def test_per_group_loss_and_tokens_are_logged_and_saved(tmp_path, tokenizer, corpus):
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 10, 4)
    trainer = RecordingTrainer(
        model=make_model(len(tokenizer)),
        args=config(tmp_path, save_strategy="steps", save_steps=5),
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model()
    # Tokens per group at the last log = blocks of that group in the planned order x max_length.
    planned = {name: 0 for name in corpus.group_names}
    for index in sampler.indices(0, len(sampler)):
        planned[corpus.group_names[corpus.train[int(index)]["group"]]] += MAX_LENGTH
    last = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    assert {name: last[f"tokens/{name}"] for name in planned} == planned
    # Each logging window (2 steps = 8 blocks) reports a loss for exactly the groups it trained on.
    group_of_block = {tuple(row["input_ids"]): corpus.group_names[row["group"]] for row in corpus.train}
    windows = [entry for entry in trainer.state.log_history if "loss" in entry]
    for window, entry in enumerate(windows):
        trained = {group_of_block[tuple(block)] for block in trainer.seen[window * 8 : (window + 1) * 8]}
        assert {key.removeprefix("loss/") for key in entry if key.startswith("loss/")} == trained
    # Per-group losses of a window average (token-weighted) to the window's overall loss.
    first = [entry for entry in trainer.state.log_history if "loss" in entry][0]
    assert min(first[k] for k in first if k.startswith("loss/")) <= first["loss"] + 1e-3
    assert max(first[k] for k in first if k.startswith("loss/")) >= first["loss"] - 1e-3
    # The data recipe goes into every checkpoint and the final folder.
    for folder in ("checkpoint-5", "checkpoint-10", "."):
        recipe = json.loads((tmp_path / folder / DATA_RECIPE_NAME).read_text())
        assert recipe["max_length"] == MAX_LENGTH
    recipe = json.loads((tmp_path / DATA_RECIPE_NAME).read_text())
    assert recipe["tokens_consumed"] == 10 * 4 * MAX_LENGTH
    for source, entry in recipe["sources"].items():
        # Within one block per source of the target ratio.
        assert abs(entry["tokens_consumed"] - RATIOS[source] * recipe["tokens_consumed"]) < MAX_LENGTH
    halfway = json.loads((tmp_path / "checkpoint-5" / DATA_RECIPE_NAME).read_text())
    assert halfway["tokens_consumed"] == 5 * 4 * MAX_LENGTH
    assert {source_of(g) for g in recipe["groups"]} == set(RATIOS)


def test_the_model_card_holds_the_data_recipe_mixture_rounds_and_curriculum_of_the_run(tmp_path, tokenizer, corpus):
    output = tmp_path / "stage1"
    args = config(
        output, max_steps=6, mixture_alpha=0.5, mixture_round_steps=3, curriculum_order="LH",
        curriculum_topics=["web-cn"], curriculum_num_difficulty_groups=4,
    )  # fmt: skip
    trainer = CPTTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train,
        train_sampler=plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 6, 4, seed=3),
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation,
    )
    trainer.train()
    trainer.create_model_card(finetuned_from="HuggingFaceTB/SmolLM2-135M", tags="bilingual", language=["en", "zh"])
    card = (output / "README.md").read_text()
    metadata = ModelCard.load(output / "README.md").data
    assert metadata.base_model == "HuggingFaceTB/SmolLM2-135M" and metadata.language == ["en", "zh"]
    assert metadata.tags == ["continual-pretraining", "hf-cpt", "llama3-syne", "bilingual"]
    recipe = trainer.data_recipe()
    assert f"### stage1: {recipe['tokens_consumed']:,} tokens, 6 steps" in card
    for source, entry in recipe["sources"].items():
        tokens = f"{entry['tokens_consumed']:,} | {entry['consumed_ratio']:.4f}"
        assert f"| {source} | {entry['target_ratio']:.4f} | {tokens} |" in card
    final = sorted(trainer.mixture_callback.rounds[-1]["proportions"].items(), key=lambda item: -item[1])
    shares = ", ".join(f"{topic} {share:.3f}" for topic, share in final)
    assert f"Topic mixture: 2 re-weighting round(s); final shares: {shares}." in card  # rounds at steps 3 and 6
    assert "Curriculum: order `LH` in 4 groups over web-cn/Philosophy." in card


def test_resume_replays_the_same_blocks_and_ends_with_the_same_weights(tmp_path, tokenizer, corpus):
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 8, 4, seed=5)
    full = RecordingTrainer(
        model=make_model(len(tokenizer)),
        args=config(tmp_path / "full", save_strategy="steps", save_steps=3),
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
    )
    full.train()
    # A restarted process plans the stage anew, as the recipe does.
    replanned = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * 8, 4, seed=5)
    resumed = RecordingTrainer(
        model=make_model(len(tokenizer), seed=1),
        args=config(tmp_path / "resumed"),
        train_dataset=corpus.train,
        train_sampler=replanned,
        processing_class=tokenizer,
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed.seen == full.seen[3 * 4 :]
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.tokens_consumed == full.tokens_consumed


def test_max_length_above_the_models_context_fails_at_start(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=64)
    with pytest.raises(ValueError, match="max_length is 128 but the model's context is 64 tokens; set max_length"):
        CPTTrainer(model=model, args=config(tmp_path, max_length=128))


def test_plain_training_arguments_are_converted_keeping_their_values(tmp_path, tokenizer):
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=3e-4, report_to="none", use_cpu=True, hub_token="hf_secret",
        lr_scheduler_type="cosine", logging_steps=7, save_steps=9, warmup_steps=3, bf16=True,
    )  # fmt: skip
    assert args.to_dict()["hub_token"] != "hf_secret"  # to_dict() masks it: the conversion must not go through it
    trainer = CPTTrainer(model=make_model(len(tokenizer), context=8192), args=args)
    assert isinstance(trainer.args, CPTConfig)
    assert trainer.args.hub_token == "hf_secret"
    for field in dataclasses.fields(TrainingArguments):
        if field.init:
            assert getattr(trainer.args, field.name) == getattr(args, field.name), field.name
    assert trainer.args.max_length == CPTConfig.max_length


def test_a_model_name_is_loaded_with_an_attention_kernel(tmp_path, tiny_model_path):
    trainer = CPTTrainer(model=tiny_model_path, args=config(tmp_path))
    assert trainer.model.config._attn_implementation == "sdpa"  # no flash-attn on a CPU machine

"""The perplexity curriculum in training: CPTTrainer with and without the mixture, a plain Trainer, resume."""

import json

import numpy as np
import pytest
from conftest import RecordingTrainer, make_model, micro_config
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from hf_cpt import CPTConfig, PPLCurriculumCallback, TopicMixtureSampler, score_perplexity
from hf_cpt.curriculum import difficulty_groups
from hf_cpt.data import load_corpus
from hf_cpt.mixture import plan_stage

MAX_LENGTH = 32
SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
RATIOS = {"web-en": 0.3, "book-en": 0.2, "web-cn": 0.4, "synthesis-en": 0.1}
CHINESE = "web-cn/Philosophy"


@pytest.fixture(scope="module")
def corpus(corpus_path, tokenizer):
    return load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])


def config(output_dir, **overrides) -> CPTConfig:
    values = dict(learning_rate=3e-3, warmup_steps=0, logging_steps=1, curriculum_order="LH")
    values |= dict(curriculum_topics=["web-cn"], curriculum_num_difficulty_groups=4)
    return micro_config(output_dir, **{**values, **overrides})


def trainer_for(corpus, tokenizer, output_dir, steps=8, **overrides) -> RecordingTrainer:
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * steps, 4, seed=3)
    return RecordingTrainer(
        model=make_model(len(tokenizer)),
        args=config(output_dir, **overrides),
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation,
    )


def block_index(corpus) -> dict[tuple, int]:
    return {tuple(row["input_ids"]): i for i, row in enumerate(corpus.train)}


def test_cpt_trainer_plays_chinese_blocks_low_to_high_and_keeps_the_mixture(tmp_path, corpus, tokenizer):
    trainer = trainer_for(corpus, tokenizer, tmp_path / "curriculum")
    initial_model = make_model(len(tokenizer))
    trainer.train()
    plain = trainer_for(corpus, tokenizer, tmp_path / "plain", curriculum_order=None)
    plain.train()
    index = block_index(corpus)
    topics = np.asarray(corpus.train["group"])
    seen = np.array([index[tuple(block)] for block in trainer.seen])
    # The curriculum reorders blocks within web-cn only: the topic of every draw is as without it.
    assert np.array_equal(topics[seen], topics[[index[tuple(block)] for block in plain.seen]])
    # The scores are the blocks' perplexity under the model at the start of training ...
    scores = np.load(tmp_path / "curriculum" / "curriculum_scores.npy")
    members = trainer.train_sampler.topic_members(CHINESE)
    expected = score_perplexity(
        initial_model,
        None,
        corpus.train.select(members),
        text_column="input_ids",
        bf16=False,
        output_dir=tmp_path / "s",
    )
    np.testing.assert_allclose(scores[members], expected, rtol=1e-6)
    assert np.isnan(np.delete(scores, members)).all()  # other topics are not ordered, not scored
    # ... and the topic's first pass is played by rising difficulty group.
    chinese = seen[topics[seen] == corpus.group_names.index(CHINESE)][: len(members)]
    groups = difficulty_groups(scores[members], 4)[np.searchsorted(members, chinese)]
    assert np.all(np.diff(groups) >= 0) and groups[-1] > groups[0]
    # The difficulty group reached is logged at every logging step, and kept in curriculum.json.
    logged = [entry[f"curriculum/group/{CHINESE}"] for entry in trainer.state.log_history if any(
        key.startswith("curriculum/group/") for key in entry)]  # fmt: skip
    assert logged == sorted(logged) and len(logged) >= 6
    chinese_id = corpus.group_names.index(CHINESE)
    group_of = dict(zip(members.tolist(), difficulty_groups(scores[members], 4).tolist(), strict=True))
    for entry in trainer.state.log_history:
        if f"curriculum/group/{CHINESE}" in entry:  # the group of the last Chinese block trained by that step
            trained = [i for i in seen[: 4 * entry["step"]] if topics[i] == chinese_id]
            assert entry[f"curriculum/group/{CHINESE}"] == group_of[int(trained[-1])]
    progress = json.loads((tmp_path / "curriculum" / "curriculum.json").read_text())["progress"]
    assert [entry["groups"].get(CHINESE) for entry in progress if CHINESE in entry["groups"]] == logged


def test_resume_with_curriculum_and_mixture_sees_the_same_blocks(tmp_path, corpus, tokenizer):
    mixture = dict(mixture_alpha=0.5, mixture_round_steps=2, mixture_scope="all")
    full = trainer_for(corpus, tokenizer, tmp_path / "full", save_strategy="steps", save_steps=3, **mixture)
    full.train()
    resumed = trainer_for(corpus, tokenizer, tmp_path / "full", **mixture)  # a restarted process, same folder
    resumed.model.load_state_dict(make_model(len(tokenizer), seed=1).state_dict())
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed.seen == full.seen[3 * 4 :]
    assert resumed.mixture_callback.rounds == full.mixture_callback.rounds
    # The checkpoint's scores were reused, not recomputed under the resumed model.
    assert resumed.curriculum_callback.scores_path == full.curriculum_callback.scores_path


def test_rescoring_resorts_the_blocks_not_drawn_yet_and_resume_replays_it(tmp_path, corpus, tokenizer):
    rescore = dict(curriculum_rescore_steps=3, save_strategy="steps", save_steps=3)
    full = trainer_for(corpus, tokenizer, tmp_path / "full", **rescore)
    full.train()
    plain = trainer_for(corpus, tokenizer, tmp_path / "plain")
    plain.train()
    callback = full.curriculum_callback
    assert [entry["step"] for entry in callback.rescores] == [3, 6]
    index = block_index(corpus)
    seen = np.array([index[tuple(block)] for block in full.seen])
    members = full.train_sampler.topic_members(CHINESE)
    chinese = seen[np.isin(seen, members)]
    first = callback.rescores[0]
    drawn = first["draws"][CHINESE]
    with np.load(first["path"]) as saved:
        blocks, scores = saved["blocks"], saved["scores"]
    # The blocks drawn before the re-scoring are those of the run without it; the rest of the pass is
    # exactly the blocks not drawn yet ...
    plain_seen = np.array([index[tuple(block)] for block in plain.seen])
    assert np.array_equal(chinese[:drawn], plain_seen[np.isin(plain_seen, members)][:drawn])
    assert sorted(blocks.tolist()) == sorted(set(members.tolist()) - set(chinese[:drawn].tolist()))
    # ... scored under the model of that step (the checkpoint saved right after) ...
    model_at_3 = type(full.model).from_pretrained(tmp_path / "full" / "checkpoint-3")
    data = corpus.train.select(blocks)
    expected = score_perplexity(model_at_3, None, data, text_column="input_ids", bf16=False, output_dir=tmp_path / "s")
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    # ... and re-sorted into the remaining places of the pass: each group's places get the easiest blocks
    # left (shuffled within the group), up to the next re-scoring.
    groups = difficulty_groups(np.load(tmp_path / "full" / "curriculum_scores.npy")[members], 4)
    places = np.sort(groups)[drawn % len(members) :]
    easiest_first = blocks[np.argsort(scores, kind="stable")]
    following = min(callback.rescores[1]["draws"][CHINESE], drawn - drawn % len(members) + len(members)) - drawn
    assert following > 2
    for j in range(following):
        assert chinese[drawn + j] in easiest_first[places == places[j]]
    # A restarted process resumes from the checkpoint with the same orders: no block differs.
    resumed = trainer_for(corpus, tokenizer, tmp_path / "full", **rescore)
    resumed.model.load_state_dict(make_model(len(tokenizer), seed=1).state_dict())
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert resumed.seen == full.seen[3 * 4 :]
    assert resumed.curriculum_callback.rescores == callback.rescores


def test_plain_trainer_with_precomputed_scores(tmp_path, corpus, tokenizer):
    sampler = TopicMixtureSampler.from_dataset(corpus.train, dict.fromkeys(corpus.group_names, 1.0), num_samples=24)
    members = sampler.topic_members(CHINESE)
    scores = np.full(len(corpus.train), np.nan)
    scores[members] = np.arange(len(members))[::-1]  # made-up difficulty: the last block is the easiest

    class MixtureTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return sampler

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=6, use_cpu=True, report_to="none",
        save_strategy="no", logging_steps=1,
    )  # fmt: skip
    trainer = MixtureTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train.remove_columns("group"),
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    one_block_per_group = len(members)  # so that LH is the exact order of the scores
    trainer.add_callback(
        PPLCurriculumCallback(
            sampler,
            corpus.train,
            order="LH",
            topics=[CHINESE],
            scores=scores,
            num_difficulty_groups=one_block_per_group,
        )
    )
    trainer.train()
    order = sampler.indices(0, 24)
    chinese = order[np.isin(order, members)]
    assert chinese.tolist() == sorted(chinese.tolist(), reverse=True)  # lowest score first = highest index


def test_curriculum_settings_fail_with_one_sentence(tmp_path, corpus, tokenizer):
    with pytest.raises(ValueError, match=r"curriculum_order 'EASY' is not a known curriculum; use one of"):
        config(tmp_path, curriculum_order="EASY")
    with pytest.raises(ValueError, match=r"curriculum_rescore_steps is 4 with curriculum_order 'RM'; re-scoring needs"):
        config(tmp_path, curriculum_order="RM", curriculum_rescore_steps=4)
    sampler = TopicMixtureSampler.from_dataset(corpus.train, dict.fromkeys(corpus.group_names, 1.0))
    with pytest.raises(ValueError, match=r"scores has 3 values for \d+ training blocks"):
        PPLCurriculumCallback(sampler, corpus.train, scores=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"topics names 'web-xx', which is neither a topic nor a source"):
        PPLCurriculumCallback(sampler, corpus.train, topics=["web-xx"])
    with pytest.raises(ValueError, match=r"order 'EASY' is not a known curriculum; use one of"):
        PPLCurriculumCallback(sampler, corpus.train, order="EASY")
    with pytest.raises(ValueError, match=r"rescore_steps is 4 with order 'RM'; re-scoring needs order LH or HL"):
        PPLCurriculumCallback(sampler, corpus.train, order="RM", rescore_steps=4)

"""`torch_compile=True`: CPTTrainer with the topic mixture and the curriculum trains as it does uncompiled."""

import pytest
from conftest import make_model, micro_config

from hf_cpt import CPTTrainer, PPLCurriculumCallback
from hf_cpt.data import load_corpus
from hf_cpt.mixture import plan_stage

MAX_LENGTH = 32
SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
RATIOS = {"web-en": 0.5, "book-en": 0.2, "web-cn": 0.2, "synthesis-en": 0.1}
STEPS = 4


def train(corpus, tokenizer, output_dir, compile_model: bool) -> CPTTrainer:
    sampler = plan_stage(corpus.train, RATIOS, MAX_LENGTH * 4 * STEPS, 4, seed=3)
    # The curriculum as a plain callback, which writes its progress into the log history itself (the Trainer's
    # own log of a step is then left whole, so this test sees the per-group losses of every logging step).
    curriculum = PPLCurriculumCallback(sampler, corpus.train, order="LH")
    args = micro_config(
        output_dir,
        torch_compile=compile_model,
        max_steps=STEPS,
        warmup_steps=0,
        learning_rate=3e-3,
        mixture_alpha=0.5,
        mixture_round_steps=3,  # rounds at step 3, between the logging steps 2 and 4
    )
    trainer = CPTTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation,
        callbacks=[curriculum],
    )
    trainer.train()
    return trainer


def test_compiled_training_matches_uncompiled_with_mixture_and_curriculum(tmp_path, corpus_path, tokenizer):
    corpus = load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=["web-en", "web-cn"])
    eager = train(corpus, tokenizer, tmp_path / "eager", compile_model=False)
    compiled = train(corpus, tokenizer, tmp_path / "compiled", compile_model=True)
    assert type(compiled.model_wrapped).__name__ == "OptimizedModule"
    # The compiled forward returned hidden states and the chunked loss ran on them.
    assert compiled._decided_head is compiled.model.lm_head and compiled._head_confirmed

    def training_logs(trainer):
        return [entry for entry in trainer.state.log_history if "loss" in entry]

    eager_logs, compiled_logs = training_logs(eager), training_logs(compiled)
    assert [entry["step"] for entry in compiled_logs] == [2, 4]
    for ours, reference in zip(compiled_logs, eager_logs, strict=True):
        group_keys = sorted(key for key in reference if key.startswith(("loss/", "tokens/")))
        assert group_keys and sorted(key for key in ours if key.startswith(("loss/", "tokens/"))) == group_keys
        assert any(key.startswith("loss/") for key in group_keys)
        for key in ["loss", *group_keys]:
            assert ours[key] == pytest.approx(reference[key], rel=1e-3, abs=1e-3), key
    # The callbacks ran the compiled model and saw what the eager one did.
    eager_rounds, compiled_rounds = eager.mixture_callback.rounds, compiled.mixture_callback.rounds
    assert [entry["step"] for entry in compiled_rounds] == [0, 3]
    for ours, reference in zip(compiled_rounds, eager_rounds, strict=True):
        assert ours["perplexity"] == pytest.approx(reference["perplexity"], rel=1e-3)
        assert ours["proportions"] == pytest.approx(reference["proportions"], rel=1e-3)
    eager_curriculum, compiled_curriculum = (t.callback_handler.callbacks for t in (eager, compiled))
    scores = [c.scores for c in (*eager_curriculum, *compiled_curriculum) if isinstance(c, PPLCurriculumCallback)]
    assert scores[0] == pytest.approx(scores[1], rel=1e-3)
    assert eager.train_sampler.indices(0, 16).tolist() == compiled.train_sampler.indices(0, 16).tolist()

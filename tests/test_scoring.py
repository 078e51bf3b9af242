"""score_perplexity: exact per-document perplexity, windows for long documents, shards that resume."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import group_vocabulary, make_model, run_two_processes
from datasets import Dataset

from hf_cpt.curriculum import score_perplexity

CONTEXT = 32
WORKER = Path(__file__).parent / "workers" / "two_process_score.py"


def documents(count: int = 9, seed: int = 0) -> list[str]:
    """Very short, medium and longer-than-the-context documents, mixed."""
    rng = np.random.default_rng(seed)
    words = group_vocabulary(0) + group_vocabulary(1)
    lengths = [2, 3, 20, 31, 32, 33, 70, 100, 5][:count] + list(rng.integers(2, 90, size=max(0, count - 9)))
    return [" ".join(rng.choice(words, size=int(n))) for n in lengths]


def reference_perplexity(model, ids: list[int], max_length: int, stride: int) -> float:
    """Float64, one token at a time: token t is predicted from the tokens of the first window that reaches
    past it (windows start at 0, stride, 2 * stride, ... and hold max_length tokens)."""
    model = model.double()
    nll = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            begin = next(b for b in range(0, len(ids), stride) if min(b + max_length, len(ids)) > t)
            context = torch.tensor([ids[begin : t + 1]])
            logits = model(input_ids=context).logits[0, -2]
            nll -= torch.log_softmax(logits, dim=-1)[ids[t]].item()
    return float(np.exp(nll / (len(ids) - 1)))


def test_perplexity_equals_a_float64_reference_including_windowed_documents(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=CONTEXT)
    texts = documents()
    scores = score_perplexity(model, tokenizer, texts, bf16=False, stride=12, output_dir=tmp_path, show_progress=False)
    reference = make_model(len(tokenizer), context=CONTEXT)
    for text, score in zip(texts, scores, strict=True):
        ids = tokenizer(text)["input_ids"]
        assert score == pytest.approx(reference_perplexity(reference, ids, CONTEXT, 12), rel=1e-4)


def test_batching_does_not_change_the_scores(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=CONTEXT)
    texts = documents(30)
    one_at_a_time = score_perplexity(
        model, tokenizer, texts, bf16=False, batch_tokens=1, output_dir=tmp_path / "a", show_progress=False
    )
    bucketed = score_perplexity(
        model, tokenizer, texts, bf16=False, batch_tokens=4096, shard_size=7, output_dir=tmp_path / "b"
    )
    np.testing.assert_allclose(bucketed, one_at_a_time, rtol=1e-5)


def test_a_dataset_column_is_scored_in_its_order(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=CONTEXT)
    texts = documents()
    data = Dataset.from_dict({"body": texts, "n": list(range(len(texts)))})
    from_dataset = score_perplexity(model, tokenizer, data, text_column="body", bf16=False, output_dir=tmp_path / "d")
    from_list = score_perplexity(model, tokenizer, texts, bf16=False, output_dir=tmp_path / "l")
    np.testing.assert_array_equal(from_dataset, from_list)


def test_a_killed_run_resumes_without_rescoring_finished_shards(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=CONTEXT)
    texts = documents(12)  # 6 shards of 2 documents
    settings = dict(bf16=False, shard_size=2, show_progress=False)
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    clean = score_perplexity(model, tokenizer, texts, output_dir=tmp_path / "clean", **settings)
    all_shards = len(calls)
    calls.clear()
    score_perplexity(model, tokenizer, texts[:4], output_dir=tmp_path / "first-two", **settings)
    first_two_shards = len(calls)
    handle.remove()

    def kill_in_the_third_shard(module, args):
        calls.append(1)
        if len(calls) == first_two_shards + 1:
            raise RuntimeError("killed")

    calls.clear()
    handle = model.register_forward_pre_hook(kill_in_the_third_shard)
    with pytest.raises(RuntimeError, match="killed"):
        score_perplexity(model, tokenizer, texts, output_dir=tmp_path / "run", **settings)
    handle.remove()
    assert len(list((tmp_path / "run").glob("shard-*.npy"))) == 2
    calls.clear()
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    resumed = score_perplexity(model, tokenizer, texts, output_dir=tmp_path / "run", **settings)
    handle.remove()
    assert len(calls) == all_shards - first_two_shards  # only the 4 unfinished shards are scored
    np.testing.assert_array_equal(resumed, clean)


def test_scores_are_keyed_by_the_model_weights(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=CONTEXT)
    texts = documents()
    before = score_perplexity(model, tokenizer, texts, bf16=False, output_dir=tmp_path, show_progress=False)
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    after = score_perplexity(model, tokenizer, texts, bf16=False, output_dir=tmp_path, show_progress=False)
    assert not np.allclose(before, after)  # a changed model is scored anew, not read from the cache


def test_two_processes_return_the_same_array_as_one(tmp_path, tokenizer):
    texts = documents(25)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    run_two_processes(WORKER, str(tmp_path))
    model = make_model(len(tokenizer), context=CONTEXT)
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    single = score_perplexity(model, tokenizer, texts, bf16=False, shard_size=4, output_dir=tmp_path / "single")
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in ranks:
        np.testing.assert_array_equal(np.array(report["scores"]), single)
    # The ranks split the work: together they ran the forward passes of one process, each some of them.
    assert ranks[0]["forwards"] + ranks[1]["forwards"] == len(forwards)
    assert min(report["forwards"] for report in ranks) > 0


@pytest.mark.parametrize(
    ("data", "column", "message"),
    [
        (["a real document here", "   "], "text", r"Document 1 is empty; drop empty documents before scoring"),
        (Dataset.from_dict({"body": ["x y"]}), "text", r"text_column 'text' is not a column of the data"),
    ],
)
def test_bad_input_fails_with_one_sentence(tmp_path, tokenizer, data, column, message):
    with pytest.raises(ValueError, match=message):
        score_perplexity(make_model(len(tokenizer), context=CONTEXT), tokenizer, data, text_column=column)


def test_score_ppl_command_writes_the_scores_of_a_corpus_source(tmp_path, corpus_path, tiny_model_path, tokenizer):
    from datasets import load_dataset

    from hf_cpt.cli import main

    output = tmp_path / "scores"
    main(["score-ppl", tiny_model_path, corpus_path, "--source", "web-en", "--output", str(output), "--no-bf16"])
    scores = np.load(output / "perplexity.npy")
    texts = load_dataset(corpus_path, data_dir="data/web-en", split="train")["text"]
    model = make_model(len(tokenizer))
    np.testing.assert_allclose(
        scores, score_perplexity(model, tokenizer, texts, bf16=False, output_dir=tmp_path / "direct"), rtol=1e-6
    )
    summary = json.loads((output / "summary.json").read_text())
    assert summary["documents"] == len(texts) and len(summary["difficulty_group_bounds"]) == 11


def test_token_id_columns_are_scored_as_they_are(tmp_path, tokenizer):
    model = make_model(len(tokenizer), context=CONTEXT)
    texts = documents()
    blocks = Dataset.from_dict({"input_ids": [tokenizer(text)["input_ids"] for text in texts]})
    from_ids = score_perplexity(model, None, blocks, text_column="input_ids", bf16=False, output_dir=tmp_path / "i")
    from_text = score_perplexity(model, tokenizer, texts, bf16=False, output_dir=tmp_path / "t")
    np.testing.assert_array_equal(from_ids, from_text)


def test_length_buckets_fit_the_budget_and_pad_under_five_percent():
    from hf_cpt.curriculum.scoring import length_buckets

    lengths = sorted(np.clip(np.random.default_rng(0).lognormal(4.5, 1.2, 3000).astype(int), 2, 512).tolist())
    batches = list(length_buckets(lengths, 8192))
    assert [start for start, _ in batches][1:] == [stop for _, stop in batches][:-1]  # contiguous, complete
    assert batches[0][0] == 0 and batches[-1][1] == len(lengths)
    assert all((stop - start) * lengths[stop - 1] <= 8192 for start, stop in batches)
    padded = sum((stop - start) * lengths[stop - 1] for start, stop in batches)
    assert (padded - sum(lengths)) / padded < 0.05

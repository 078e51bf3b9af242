"""Topic classifier (§3.2.1): training with a stratified held-out report, and sharded, resumable labeling."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_two_processes
from datasets import Dataset, load_dataset
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from hf_cpt.testing import BERT_SPECIALS, word_tokenizer
from hf_cpt.topics.classifier import (
    classification_metrics,
    embedded_classifier_path,
    stratified_split,
    train_topic_classifier,
)
from hf_cpt.topics.labeling import label_topics
from hf_cpt.topics.taxonomy import Taxonomy, load_taxonomy

TAXONOMY = Taxonomy("tiny", "en", ("Astronomy", "Cooking", "Sailing"))
SHARED_WORDS = [f"common{i}" for i in range(20)]
WORKER = Path(__file__).parent / "workers" / "two_process_label.py"
FP32 = {"bf16": False}


def topic_words(topic: str) -> list[str]:
    return [f"{topic.lower()}{i}" for i in range(15)]


def make_bert_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with BERT's special tokens and its `[CLS] text [SEP]` template."""
    words = SHARED_WORDS + [word for topic in TAXONOMY.topics for word in topic_words(topic)]
    tokenizer = word_tokenizer(words, BERT_SPECIALS)
    tokenizer.save_pretrained(directory)
    return tokenizer


def make_bert(vocab_size: int, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=len(TAXONOMY),
        id2label=dict(enumerate(TAXONOMY.topics)),
        label2id={topic: i for i, topic in enumerate(TAXONOMY.topics)},
    )
    return BertForSequenceClassification(config).eval()


def labelled_documents(per_topic: int = 10, seed: int = 0) -> Dataset:
    """Documents of 3 to 40 words, half shared filler and half words of their own topic: learnable, mixed lengths."""
    rng = np.random.default_rng(seed)
    texts, topics = [], []
    for _ in range(per_topic):
        for topic in TAXONOMY.topics:
            words = rng.choice(SHARED_WORDS + topic_words(topic) * 2, size=int(rng.integers(3, 40)))
            texts.append(" ".join(words))
            topics.append(topic)
    return Dataset.from_dict({"text": texts, "topic": topics})


def unlabelled_documents(count: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    words = SHARED_WORDS + [word for topic in TAXONOMY.topics for word in topic_words(topic)]
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 60)))) for _ in range(count)]


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory) -> PreTrainedTokenizerFast:
    return make_bert_tokenizer(tmp_path_factory.mktemp("bert-tokenizer"))


@pytest.fixture(scope="module")
def tiny_bert_path(tmp_path_factory, bert_tokenizer) -> Path:
    """A tiny random BERT encoder with its tokenizer, laid out like a Hub model repo."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    make_bert(len(bert_tokenizer)).save_pretrained(directory)
    bert_tokenizer.save_pretrained(directory)
    return directory


def test_training_writes_a_hub_ready_folder_that_labels_like_the_report(tmp_path, tiny_bert_path):
    dataset = labelled_documents()
    output = tmp_path / "classifier"
    report = train_topic_classifier(
        dataset,
        TAXONOMY,
        tiny_bert_path,
        output,
        epochs=6,
        learning_rate=5e-3,
        batch_size=4,
        training_args_overrides=FP32,
    )
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "confusion_matrix.png"):
        assert (output / name).is_file(), name
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["accuracy"] == report.accuracy and metrics["confusion"] == report.confusion
    assert (report.num_train, report.num_heldout) == (24, 6)  # 2 of each topic's 10 documents held out
    assert report.accuracy > report.majority_baseline  # the topic words are learnt
    card = (output / "README.md").read_text()
    assert f"| accuracy | {report.accuracy:.4f} |" in card
    assert f"| majority-class baseline accuracy | {report.majority_baseline:.4f} |" in card
    assert "arXiv:2407.18743" in card and all(topic in card for topic in TAXONOMY.topics)

    # The saved folder labels the held-out documents as the report measured them.
    _, heldout = stratified_split([TAXONOMY.index(t) for t in dataset["topic"]], 0.2, 0)
    labelled = label_topics(dataset, output, bf16=False, output_dir=tmp_path / "labels", show_progress=False)
    predicted = np.array(labelled["topic"])[heldout]
    assert np.mean(predicted == np.array(dataset["topic"])[heldout]) == pytest.approx(report.accuracy)


def test_the_split_is_stratified_and_deterministic_by_seed():
    labels = [0] * 10 + [1] * 5 + [2] * 2 + [3]
    train, heldout = stratified_split(labels, 0.2, seed=3)
    assert np.bincount(np.asarray(labels)[heldout], minlength=4).tolist() == [2, 1, 1, 0]  # 3 has a single row
    assert sorted(train.tolist() + heldout.tolist()) == list(range(len(labels)))
    again_train, again_heldout = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(heldout, again_heldout)
    np.testing.assert_array_equal(train, again_train)
    assert any(not np.array_equal(stratified_split(labels, 0.2, seed)[1], heldout) for seed in range(4, 8))


def test_metrics_match_a_hand_computation_with_a_never_predicted_and_an_absent_topic():
    # Topic C is never predicted (precision 0, F1 0); topic D has no held-out document (left out of macro-F1).
    true = [0, 0, 0, 1, 1, 2, 2]
    predicted = [0, 0, 1, 1, 0, 0, 1]
    metrics = classification_metrics(true, predicted, ["A", "B", "C", "D"])
    assert metrics["accuracy"] == pytest.approx(3 / 7)
    assert metrics["per_class"]["A"] == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert metrics["per_class"]["B"] == pytest.approx({"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    assert metrics["per_class"]["C"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert metrics["macro_f1"] == pytest.approx((4 / 7 + 0.4 + 0.0) / 3)
    assert metrics["confusion"] == [[2, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]


def test_labels_equal_an_unbatched_forward_pass_in_the_original_order(tmp_path, bert_tokenizer):
    model = make_bert(len(bert_tokenizer))
    texts = unlabelled_documents(23)
    dataset = Dataset.from_dict({"body": texts, "row": list(range(len(texts)))})
    labelled = label_topics(
        dataset, model, tokenizer=bert_tokenizer, text_column="body", batch_size=4, max_length=32, bf16=False,
        shard_size=10, output_dir=tmp_path, show_progress=False,
    )  # fmt: skip
    assert list(labelled["row"]) == list(range(len(texts)))
    with torch.no_grad():
        for text, topic, probs in zip(texts, labelled["topic"], labelled["topic_probs"], strict=True):
            encoding = bert_tokenizer(text, truncation=True, max_length=32, return_tensors="pt")
            expected = model(**encoding).logits.softmax(dim=-1)[0].numpy()
            np.testing.assert_allclose(probs, expected, atol=1e-5)
            assert topic == TAXONOMY.topics[int(expected.argmax())]


def test_two_processes_label_like_one(tmp_path, bert_tokenizer):
    texts = unlabelled_documents(25)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    bert_tokenizer.save_pretrained(tmp_path / "tokenizer")
    run_two_processes(WORKER, str(tmp_path))
    model = make_bert(len(bert_tokenizer))
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    single = label_topics(
        Dataset.from_dict({"text": texts}), model, tokenizer=bert_tokenizer, batch_size=4, bf16=False, shard_size=4,
        output_dir=tmp_path / "single", show_progress=False,
    )  # fmt: skip
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for report in ranks:
        assert report["topic"] == list(single["topic"])
        np.testing.assert_array_equal(
            np.array(report["topic_probs"], dtype=np.float32), np.array(list(single["topic_probs"]))
        )
    # The ranks split the work: together they ran the forward passes of one process, each some of them.
    assert ranks[0]["forwards"] + ranks[1]["forwards"] == len(forwards)
    assert min(report["forwards"] for report in ranks) > 0


def test_a_killed_run_resumes_without_relabeling_finished_shards(tmp_path, bert_tokenizer):
    model = make_bert(len(bert_tokenizer))
    dataset = Dataset.from_dict({"text": unlabelled_documents(12)})  # 6 shards of 2 documents, 1 batch each
    settings = dict(tokenizer=bert_tokenizer, batch_size=2, bf16=False, shard_size=2, show_progress=False)
    clean = label_topics(dataset, model, output_dir=tmp_path / "clean", **settings)
    calls = []

    def kill_in_the_third_shard(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")

    handle = model.register_forward_pre_hook(kill_in_the_third_shard)
    with pytest.raises(RuntimeError, match="killed"):
        label_topics(dataset, model, output_dir=tmp_path / "run", **settings)
    handle.remove()
    assert len(list((tmp_path / "run").glob("*.npy"))) == 2
    calls.clear()
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    resumed = label_topics(dataset, model, output_dir=tmp_path / "run", **settings)
    handle.remove()
    assert len(calls) == 4  # only the 4 unfinished shards are labelled
    assert len(list((tmp_path / "run").glob("*.npy"))) == 6
    assert list(resumed["topic"]) == list(clean["topic"])
    assert list(resumed["topic_probs"]) == list(clean["topic_probs"])


def test_the_embedded_classifier_is_found_in_its_package():
    assert (embedded_classifier_path() / "config.json").is_file()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda path, tok: load_taxonomy("klingon"), "Taxonomy 'klingon' is unknown; use one of ['en', 'cn']"),
        (lambda path, tok: Taxonomy("none", "en", ()), "Taxonomy 'none' has an empty label set; list at least one"),
        (
            lambda path, tok: train_topic_classifier(
                Dataset.from_dict({"text": ["a b", "c d"], "topic": ["Astronomy", "Knitting"]}), TAXONOMY, path
            ),
            "Label 'Knitting' in column 'topic' is not a topic of taxonomy 'tiny'; relabel it as one of",
        ),
        (
            lambda path, tok: train_topic_classifier(
                Dataset.from_dict({"body": ["a"], "topic": ["Astronomy"]}), TAXONOMY, path
            ),
            "text_column 'text' is not a column of the dataset",
        ),
        (
            lambda path, tok: train_topic_classifier(Dataset.from_dict({"text": ["a"]}), TAXONOMY, path),
            "label_column 'topic' is not a column of the dataset",
        ),
        (
            lambda path, tok: train_topic_classifier(Dataset.from_dict({"text": [], "topic": []}), TAXONOMY, path),
            "The dataset has no rows; label some documents",
        ),
        (
            lambda path, tok: train_topic_classifier(
                Dataset.from_dict({"text": ["a"], "topic": ["Cooking"]}), TAXONOMY, path
            ),
            "No topic in column 'topic' has two labelled documents, so none can be held out",
        ),
        (
            lambda path, tok: label_topics(Dataset.from_dict({"body": ["a"]}), path),
            "text_column 'text' is not a column of the data",
        ),
        (
            lambda path, tok: label_topics(Dataset.from_dict({"text": ["a"]}), make_bert(len(tok))),
            "tokenizer is missing; pass the classifier's tokenizer",
        ),
    ],
    ids=[
        "unknown-taxonomy",
        "empty-label-set",
        "label-outside",
        "no-text",
        "no-label",
        "empty",
        "one-per-topic",
        "label-no-text",
        "no-tokenizer",
    ],
)
def test_bad_input_fails_with_one_sentence(tiny_bert_path, bert_tokenizer, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(tiny_bert_path, bert_tokenizer)


@pytest.mark.slow
def test_the_embedded_minilm_beats_the_majority_baseline_on_the_demo_web_documents(tmp_path):
    from hf_cpt.data import DEMO_CORPUS_PATH, load_source

    dataset = load_source(DEMO_CORPUS_PATH, "web-en", "train")
    started = time.perf_counter()
    # The opening 128 tokens (title and first paragraph) name the topic; a higher rate than the default
    # converges in fewer epochs, which keeps this run to a few minutes on two CPU cores.
    report = train_topic_classifier(
        dataset, "en", output_dir=tmp_path / "minilm", epochs=8, learning_rate=3e-4, max_length=128
    )
    print(
        f"\nMiniLM on web-en: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}, "
        f"baseline {report.majority_baseline:.3f}, {report.num_train} train / {report.num_heldout} held out, "
        f"{time.perf_counter() - started:.0f} s"
    )
    assert report.accuracy >= report.majority_baseline + 0.15


def test_train_classifier_and_label_commands_write_a_classifier_and_a_labelled_dataset(tmp_path, tiny_bert_path):
    import yaml

    from hf_cpt.cli import main

    labelled = tmp_path / "labelled.jsonl"
    labelled_documents().to_json(labelled)
    taxonomy = tmp_path / "tiny.yaml"
    taxonomy.write_text(yaml.safe_dump({"name": "tiny", "language": "en", "topics": list(TAXONOMY.topics)}))
    classifier = tmp_path / "classifier"
    command = ["train-classifier", str(labelled), "--output", str(classifier), "--taxonomy", str(taxonomy)]
    main([*command, "--model", str(tiny_bert_path), "--epochs", "6", "--learning-rate", "5e-3", "--batch-size", "4"])
    metrics = json.loads((classifier / "metrics.json").read_text())
    assert metrics["accuracy"] > metrics["majority_baseline"]
    corpus = tmp_path / "corpus.jsonl"
    Dataset.from_dict({"text": unlabelled_documents(9)}).to_json(corpus)
    main(
        ["label", str(corpus), "--classifier", str(classifier), "--output", str(tmp_path / "out"), "--shard-size", "4"]
    )
    result = load_dataset("parquet", data_files=str(tmp_path / "out" / "data" / "train-*.parquet"), split="train")
    expected = label_topics(Dataset.from_dict({"text": unlabelled_documents(9)}), str(classifier), bf16=False)
    assert result["topic"] == expected["topic"] and set(result["topic"]) <= set(TAXONOMY.topics)
    assert len(list((tmp_path / "out" / "shards").glob("shard-*.npy"))) == 3

"""Loading sources (one code path for Hub ids and local folders), tokenising, topic-pure packing."""

import json

import numpy as np
import pytest
import torch
from conftest import CORPUS_LAYOUT, WORDS_PER_GROUP, make_model, make_tokenizer
from datasets import Dataset
from transformers import Trainer, TrainingArguments, default_data_collator

from hf_cpt.data import load_corpus, load_source, pack_documents, tokenize_documents
from hf_cpt.data.packing import group_sizes

SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]


def group_of_token(token_id: int) -> int:
    return (token_id - 3) // WORDS_PER_GROUP  # 3 special tokens come first


def test_local_folder_loads_by_source_and_split(corpus_path):
    train = load_source(corpus_path, "web-en")
    validation = load_source(corpus_path, "web-en", split="validation")
    assert len(train) == 12 + 12 + 2  # two topics, plus one short document each
    assert len(validation) == 4
    assert set(train["topic"]) == {"Law and Policy", "Medicine and Health"}


def test_missing_dataset_path_fails_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset_path '.*nowhere' does not exist; set dataset_path"):
        load_source(str(tmp_path / "nowhere"), "web-en")


def test_unreachable_hub_id_fails_with_the_fix():
    with pytest.raises(FileNotFoundError, match="is neither a local folder nor a reachable Hub dataset id"):
        load_source("no-such-org/no-such-dataset", "web-en")


def test_source_absent_from_the_data_fails_with_the_fix(corpus_path):
    with pytest.raises(
        FileNotFoundError, match=r"Source 'code-en' is not in dataset_path .*remove it from the mixture"
    ):
        load_source(corpus_path, "code-en")


def test_missing_text_column_fails_with_the_fix(corpus_path):
    with pytest.raises(ValueError, match=r"text_column 'content' is not a column of source 'book-en'"):
        load_source(corpus_path, "book-en", text_column="content")


def test_tokenizer_without_eos_fails_with_the_fix(tmp_path, corpus_path):
    tokenizer = make_tokenizer(tmp_path, with_eos=False)
    with pytest.raises(ValueError, match="has no eos_token; set tokenizer.eos_token"):
        load_corpus(corpus_path, ["book-en"], tokenizer, max_length=32)


def test_documents_under_min_doc_tokens_are_dropped(tokenizer):
    data = Dataset.from_dict({"text": ["g0w1 " * 19, "g0w1 " * 20, "g0w1 " * 40]})
    kept = tokenize_documents(data, tokenizer, min_doc_tokens=20)
    assert [len(ids) for ids in kept["input_ids"]] == [20, 40]


def test_packing_joins_documents_with_eos_into_full_blocks():
    documents = Dataset.from_dict({"input_ids": [[5, 6, 7], [8, 9], [10, 11, 12, 13]]})
    packed = pack_documents(documents, eos_token_id=1, max_length=4)
    # Stream: 5 6 7 1 8 9 1 10 11 12 13 1 -> three full blocks, nothing left over.
    assert packed["input_ids"] == [[5, 6, 7, 1], [8, 9, 1, 10], [11, 12, 13, 1]]
    assert packed["labels"] == packed["input_ids"]  # as run_clm.py's group_texts makes them
    shorter = pack_documents(documents, eos_token_id=1, max_length=5)
    assert shorter["input_ids"] == [[5, 6, 7, 1, 8], [9, 1, 10, 11, 12]]  # the partial tail is dropped
    kept = pack_documents(documents, eos_token_id=1, max_length=5, keep_tail=True)
    assert kept["input_ids"] == [[5, 6, 7, 1, 8], [9, 1, 10, 11, 12], [13, 1, 1, 1, 1]]
    assert kept["labels"] == [[5, 6, 7, 1, 8], [9, 1, 10, 11, 12], [13, 1, -100, -100, -100]]  # filler not scored
    # A one-token tail would predict nothing (a block's first token has no context): dropped all the same.
    assert pack_documents(documents, eos_token_id=1, max_length=11, keep_tail=True)["input_ids"] == [
        [5, 6, 7, 1, 8, 9, 1, 10, 11, 12, 13]
    ]


def test_every_block_is_pure_in_its_topic_and_full(corpus_path, tokenizer):
    corpus = load_corpus(corpus_path, SOURCES, tokenizer, max_length=32, topic_sources=["web-en", "web-cn"])
    assert corpus.group_names == list(CORPUS_LAYOUT)
    expected_group = {name: index for index, name in enumerate(CORPUS_LAYOUT)}
    for row in corpus.train:
        ids = np.array(row["input_ids"])
        assert len(ids) == 32
        words = ids[ids != tokenizer.eos_token_id]
        assert {group_of_token(t) for t in words} == {expected_group[corpus.group_names[row["group"]]]}
    assert all(count > 0 for count in group_sizes(np.asarray(corpus.train["group"]), corpus.group_names).values())


def test_validation_documents_keep_their_group_and_are_truncated(corpus_path, tokenizer):
    corpus = load_corpus(corpus_path, SOURCES, tokenizer, max_length=30, topic_sources=["web-en", "web-cn"])
    names = corpus.validation.features["group"].names
    assert names == corpus.group_names
    assert max(len(ids) for ids in corpus.validation["input_ids"]) <= 30
    counts = np.bincount(corpus.validation["group"], minlength=len(names))
    assert counts.tolist() == [2, 2, 2, 2, 2]


def test_a_topic_source_without_its_topic_column_fails_with_the_fix(corpus_path, tokenizer):
    with pytest.raises(ValueError, match=r"topic_column 'topic' is not a column of source 'book-en'"):
        load_corpus(corpus_path, ["book-en"], tokenizer, max_length=32, topic_sources=["book-en"])


def test_a_group_shorter_than_one_block_fails_with_the_fix(tmp_path, tokenizer):
    folder = tmp_path / "data" / "book-en"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text(json.dumps({"text": "g2w1 " * 25}) + "\n")
    with pytest.raises(ValueError, match=r"'book-en' has fewer than max_length=64 tokens.*lower max_length"):
        load_corpus(str(tmp_path), ["book-en"], tokenizer, max_length=64)


def test_extra_training_documents_join_their_source_and_need_its_columns(corpus_path, tokenizer):
    extra_ids = [f"g4w{(7 * i) % WORDS_PER_GROUP}" for i in range(64)]
    extra = Dataset.from_dict({"text": [" ".join(extra_ids)], "problem": ["kept out"]})
    plain = load_corpus(corpus_path, ["synthesis-en"], tokenizer, max_length=32)
    joined = load_corpus(corpus_path, ["synthesis-en"], tokenizer, max_length=32, extra_train={"synthesis-en": extra})
    assert joined.validation["input_ids"] == plain.validation["input_ids"]  # only the training split grows
    stream = [token for block in joined.train["input_ids"] for token in block]
    assert stream[: len(plain.train) * 32] == [token for block in plain.train["input_ids"] for token in block]
    wanted = tokenizer.convert_tokens_to_ids(extra_ids[:32])
    assert any(stream[i : i + 32] == wanted for i in range(len(stream) - 31))
    with pytest.raises(ValueError, match=r"added to source 'synthesis-en' lack its columns \['text'\]"):
        load_corpus(
            corpus_path,
            ["synthesis-en"],
            tokenizer,
            32,
            extra_train={"synthesis-en": extra.rename_column("text", "body")},
        )


def test_validation_blocks_pack_each_groups_documents_scoring_every_token_once(corpus_path, tokenizer):
    corpus = load_corpus(corpus_path, SOURCES, tokenizer, max_length=32, topic_sources=["web-en", "web-cn"])
    assert corpus.train["labels"] == corpus.train["input_ids"]
    blocks = corpus.validation_blocks()
    assert blocks.column_names == ["input_ids", "labels", "group"]
    assert blocks.features["group"].names == corpus.group_names
    eos = tokenizer.eos_token_id
    for group, name in enumerate(corpus.group_names):
        documents = [row["input_ids"] for row in corpus.validation if row["group"] == group]
        stream = [token for document in documents for token in [*document, eos]]
        rows = [row for row in blocks if row["group"] == group]
        assert all(len(row["input_ids"]) == 32 for row in rows)
        assert len(rows) == len(stream) // 32 + (len(stream) % 32 >= 2), name
        labels = [token for row in rows for token in row["labels"]]
        kept = stream[: len(rows) * 32]
        assert labels == kept + [-100] * (len(rows) * 32 - len(kept))  # every token once, the filler never
        assert [token for row in rows for token in row["input_ids"]][: len(kept)] == kept
    assert len(corpus.validation_blocks(max_length=16)[0]["input_ids"]) == 16


def test_validation_blocks_evaluate_in_a_plain_trainer(tmp_path, corpus_path, tokenizer):
    corpus = load_corpus(corpus_path, SOURCES, tokenizer, max_length=32, topic_sources=["web-en", "web-cn"])
    blocks = corpus.validation_blocks()
    model = make_model(len(tokenizer))
    args = TrainingArguments(str(tmp_path), per_device_eval_batch_size=1, use_cpu=True, report_to="none")
    trainer = Trainer(model=model, args=args, eval_dataset=blocks, data_collator=default_data_collator)
    metrics = trainer.evaluate()
    with torch.no_grad():  # the mean over blocks of each block's mean NLL over its scored tokens
        losses = [
            model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss.item()
            for row in blocks
        ]
    assert all(np.isfinite(losses))  # every block has tokens to predict
    assert metrics["eval_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)

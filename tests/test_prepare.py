"""Preparing a corpus once: the blocks of tokenising and packing per topic, whatever the shards, workers or ranks,
resumed per shard after a kill, and memory-mapped at 2 bytes a token where the vocabulary fits."""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import run_two_processes

import hf_cpt.cli
from hf_cpt.cli.main import main
from hf_cpt.data import DEMO_CORPUS_PATH, load_corpus, load_source, pack_documents, tokenize_documents
from hf_cpt.data import prepare as prepare_module
from hf_cpt.data.packing import PACK_BATCH_DOCUMENTS, group_name
from hf_cpt.data.prepare import MANIFEST_NAME, load_prepared, prepare_corpus, token_dtype

SOURCES = ["web-en", "book-en", "web-cn", "synthesis-en"]
TOPIC_SOURCES = ["web-en", "web-cn"]
MAX_LENGTH = 24
PACK_BATCH = 5  # documents packed together: small, so that batches straddle shards and topics interleave in them
CLI = Path(hf_cpt.cli.__file__).parent / "__main__.py"


@pytest.fixture(autouse=True)
def small_pack_batches(monkeypatch, tmp_path):
    monkeypatch.setattr(prepare_module, "PACK_BATCH_DOCUMENTS", PACK_BATCH)
    monkeypatch.setenv("HF_CPT_CACHE", str(tmp_path / "cache"))


def packed_per_topic(corpus_path: str, tokenizer, max_length: int = MAX_LENGTH) -> tuple[dict, dict]:
    """Training blocks and validation documents per group the way `datasets` does it: `tokenize_documents`, one
    filter per topic, `pack_documents` (the reference the prepared corpus must equal)."""
    train, validation = {}, {}
    for source in SOURCES:
        for split, parts in (("train", train), ("validation", validation)):
            raw = load_source(corpus_path, source, split)
            topic = "topic" if source in TOPIC_SOURCES else None
            tokenized = tokenize_documents(raw, tokenizer, max_doc_tokens=max_length if split == "validation" else None,
                                           keep_columns=(topic,) if topic else ())  # fmt: skip
            topics = sorted(set(tokenized["topic"])) if topic else [None]
            for value in topics:
                documents = tokenized.filter(lambda row, v=value: row["topic"] == v) if topic else tokenized
                documents = documents.select_columns(["input_ids"])
                if split == "train":
                    blocks = pack_documents(documents, tokenizer.eos_token_id, max_length, batch_size=PACK_BATCH)
                    parts[group_name(source, value)] = blocks["input_ids"]
                else:
                    parts[group_name(source, value)] = documents["input_ids"]
    return train, validation


def by_group(dataset) -> dict[str, list[list[int]]]:
    names = dataset.features["group"].names
    groups: dict[str, list[list[int]]] = {}
    for row in dataset:
        groups.setdefault(names[row["group"]], []).append(row["input_ids"])
    return groups


def prepare(corpus_path, tokenizer, folder, **kwargs) -> Path:
    return prepare_corpus(
        corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=TOPIC_SOURCES, output_dir=folder, **kwargs
    )


def arrays(folder: Path) -> dict[str, np.ndarray]:
    return {name: np.load(folder / name) for name in ("train.npy", "validation.npy", "validation_offsets.npy")}


@pytest.mark.parametrize(("shard_size", "num_proc"), [(3, None), (7, 2), (1000, None)])
def test_prepared_blocks_are_those_of_tokenising_and_packing_each_topic(
    tmp_path, corpus_path, tokenizer, shard_size, num_proc
):
    train, validation, manifest = load_prepared(
        prepare(corpus_path, tokenizer, tmp_path / "prepared", shard_size=shard_size, num_proc=num_proc)
    )
    expected_train, expected_validation = packed_per_topic(corpus_path, tokenizer)
    assert manifest["group_names"] == list(expected_train)  # sources in order, each one's topics sorted
    assert by_group(train) == expected_train
    assert by_group(validation) == expected_validation
    assert train["labels"] == train["input_ids"]


def test_the_corpus_is_the_same_whatever_the_shard_size_and_the_workers(tmp_path, corpus_path, tokenizer):
    one = prepare(corpus_path, tokenizer, tmp_path / "one", shard_size=1000)
    many = prepare(corpus_path, tokenizer, tmp_path / "many", shard_size=2, num_proc=2)
    for name, array in arrays(one).items():
        np.testing.assert_array_equal(array, arrays(many)[name], err_msg=name)
    assert (one / MANIFEST_NAME).read_text() == (many / MANIFEST_NAME).read_text()
    assert not (one / "shards").exists()  # the shards are gone once the corpus is written


def test_two_ranks_prepare_the_corpus_one_rank_does(tmp_path, corpus_path, tiny_model_path, monkeypatch, caplog):
    monkeypatch.setattr(prepare_module, "PACK_BATCH_DOCUMENTS", PACK_BATCH_DOCUMENTS)  # as the launched ranks have it
    arguments = [corpus_path, "--sources", *SOURCES, "--model", tiny_model_path, "--max-length", str(MAX_LENGTH),
                 "--topic-sources", *TOPIC_SOURCES, "--shard-size", "3"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="hf_cpt.data.prepare"):
        main(["prepare", *arguments, "--output", str(tmp_path / "alone")])
    total = int(re.search(r"Rank 0 of 1 tokenised (\d+) shards", caplog.text).group(1))
    result = run_two_processes(CLI, "prepare", *arguments, "--output", str(tmp_path / "two"))
    shards = {
        int(rank): int(count) for rank, count in re.findall(r"Rank (\d) of 2 tokenised (\d+) shards", result.stderr)
    }
    assert sorted(shards) == [0, 1] and min(shards.values()) > 0  # both ranks tokenised, each its share
    assert sum(shards.values()) == total
    alone, two = tmp_path / "alone", tmp_path / "two"
    for name, array in arrays(alone).items():
        np.testing.assert_array_equal(array, arrays(two)[name], err_msg=name)
    # The same key (of documents, tokenizer and settings), so the same dataset fingerprints in every process.
    assert json.loads((alone / MANIFEST_NAME).read_text()) == json.loads((two / MANIFEST_NAME).read_text())


class Kill(Exception):
    pass


def test_a_killed_preparation_redoes_only_the_shard_it_did_not_finish(tmp_path, corpus_path, tokenizer, monkeypatch):
    folder = tmp_path / "prepared"
    reference = prepare(corpus_path, tokenizer, tmp_path / "reference", shard_size=4)

    def killed(*args, **kwargs):
        raise Kill

    with monkeypatch.context() as patch:  # killed after the last shard, before the corpus is written
        patch.setattr(prepare_module._Layout, "write", killed)
        with pytest.raises(Kill):
            prepare(corpus_path, tokenizer, folder, shard_size=4)
    shard = folder / "shards" / "web-en.train" / "shard-000000000004.npz"
    shard.unlink()  # this one was being written: only its temporary file is left, cut short
    shard.with_name("shard-000000000004.tmp-1234-abcdef01.npz").write_bytes(b"PK\x03\x04 cut short")
    tokenized = []
    original = prepare_module.tokenize_shard

    def counting(texts, *args):
        tokenized.append(len(texts))
        return original(texts, *args)

    monkeypatch.setattr(prepare_module, "tokenize_shard", counting)
    prepare(corpus_path, tokenizer, folder, shard_size=4)
    assert tokenized == [4]  # one shard of 4 documents, the one without its file
    for name, array in arrays(reference).items():
        np.testing.assert_array_equal(array, arrays(folder)[name], err_msg=name)
    tokenized.clear()
    assert load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=TOPIC_SOURCES, prepared_dir=folder)
    assert tokenized == []  # a complete folder is only mapped


def test_tokens_take_two_bytes_where_the_vocabulary_fits_and_four_beyond(tmp_path, corpus_path, tokenizer, monkeypatch):
    assert token_dtype(65_536) == np.uint16  # ids 0 .. 65,535
    assert token_dtype(65_537) == np.uint32
    small = prepare(corpus_path, tokenizer, tmp_path / "small")
    blocks = np.load(small / "train.npy", mmap_mode="r")
    assert blocks.dtype == np.uint16
    header = blocks.offset
    assert (small / "train.npy").stat().st_size == header + 2 * blocks.size  # 2 bytes a token, nothing else
    monkeypatch.setattr(prepare_module, "token_dtype", lambda vocab_size: np.dtype(np.uint32))
    large = prepare(corpus_path, tokenizer, tmp_path / "large")
    assert np.load(large / "train.npy").dtype == np.uint32
    np.testing.assert_array_equal(np.load(large / "train.npy"), np.load(small / "train.npy"))
    assert load_prepared(large)[0]["input_ids"] == load_prepared(small)[0]["input_ids"]


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """The address ranges this process maps from the file at `path` (Linux)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = re.match(r"([0-9a-f]+)-([0-9a-f]+)", line).groups()
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def test_the_blocks_are_read_from_the_mapped_file_not_copied(tmp_path, corpus_path, tokenizer):
    folder = prepare(corpus_path, tokenizer, tmp_path / "prepared")
    train, validation, _ = load_prepared(folder)
    for dataset, file in ((train, "train.npy"), (validation, "validation.npy")):
        values = dataset.data.table["input_ids"].chunks[0].values
        address = values.buffers()[1].address
        assert any(start <= address < end for start, end in mapped_ranges(folder / file)), file


def test_load_corpus_maps_what_prepare_wrote_with_one_fingerprint_per_corpus(tmp_path, corpus_path, tokenizer):
    first = load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=TOPIC_SOURCES)
    again = load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH, topic_sources=TOPIC_SOURCES)
    other = load_corpus(corpus_path, SOURCES, tokenizer, MAX_LENGTH + 1, topic_sources=TOPIC_SOURCES)
    assert first.train._fingerprint == again.train._fingerprint != other.train._fingerprint
    assert first.validation._fingerprint == again.validation._fingerprint != first.train._fingerprint
    folders = [path for path in (tmp_path / "cache" / "prepared").iterdir() if path.is_dir()]
    assert len(folders) == 2  # the cache holds each corpus once


def test_two_callers_at_once_take_turns_and_get_the_same_corpus(tmp_path, corpus_path, tokenizer):
    with ThreadPoolExecutor(2) as pool:  # as every rank of a script calling load_corpus without main_process_first
        calls = [pool.submit(prepare, corpus_path, tokenizer, tmp_path / "prepared", shard_size=2) for _ in range(2)]
        folders = [call.result() for call in calls]
    assert folders[0] == folders[1]
    reference = prepare(corpus_path, tokenizer, tmp_path / "reference")
    for name, array in arrays(reference).items():
        np.testing.assert_array_equal(array, arrays(folders[0])[name], err_msg=name)


def test_a_prepared_folder_of_another_corpus_is_refused_not_overwritten(tmp_path, corpus_path, tokenizer):
    folder = prepare(corpus_path, tokenizer, tmp_path / "prepared")
    before = (folder / "train.npy").read_bytes()
    with pytest.raises(ValueError, match=r"holds another corpus .*give another output folder"):
        load_corpus(corpus_path, SOURCES, tokenizer, 32, topic_sources=TOPIC_SOURCES, prepared_dir=folder)
    assert (folder / "train.npy").read_bytes() == before
    with pytest.raises(FileNotFoundError, match=r"is not a prepared corpus .*hf-cpt prepare"):
        load_prepared(tmp_path / "nothing")


def test_cli_prepares_the_bundled_corpus_where_load_corpus_finds_it(tmp_path, tiny_model_path, capsys, monkeypatch):
    from transformers import AutoTokenizer

    sources = ["web-en", "book-en", "code-en"]
    main(["prepare", "--sources", *sources, "--model", tiny_model_path, "--max-length", "64", "--num-proc", "2"])
    printed = capsys.readouterr().out
    folder = Path(printed.strip().rsplit(": ", 1)[1])
    assert folder.parent == tmp_path / "cache" / "prepared"
    assert re.match(r"Prepared \d+ blocks of 64 tokens \(uint16\) in \d+ groups", printed)
    tokenized = []
    monkeypatch.setattr(prepare_module, "tokenize_shard", lambda *args: tokenized.append(args))
    corpus = load_corpus(str(DEMO_CORPUS_PATH), sources, AutoTokenizer.from_pretrained(tiny_model_path), 64,
                         topic_sources=["web-en"])  # fmt: skip
    assert tokenized == []  # found prepared: nothing tokenised again
    assert corpus.train["input_ids"] == load_prepared(folder)[0]["input_ids"]
    assert corpus.group_names == json.loads((folder / MANIFEST_NAME).read_text())["group_names"]


def test_the_batch_encoder_gives_the_tokenizers_own_ids_even_after_a_truncating_call(tokenizer):
    from transformers import AutoTokenizer

    from hf_cpt.modeling import EMBEDDED_GGUF, embedded_package_dir

    smollm = AutoTokenizer.from_pretrained(embedded_package_dir(), gguf_file=EMBEDDED_GGUF)  # byte-level BPE
    lines = (Path(DEMO_CORPUS_PATH) / "data" / "web-cn" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines] + ["  leading spaces, <|endoftext|> and émigré ©"]
    for each in (smollm, tokenizer):
        each(texts, truncation=True, max_length=4)  # leaves truncation on in the Rust tokenizer
        assert prepare_module.batch_encoder(each)(texts) == each(texts, add_special_tokens=False)["input_ids"]


def test_cli_holds_out_validation_of_a_train_only_source_as_the_recipe_does(
    tmp_path, tiny_model_path, capsys, monkeypatch
):
    """`--validation-documents` prepares what `load_corpus(validation_documents=)` (the recipe on the release)
    then maps: the same held-out documents, found prepared, nothing tokenised again."""
    from conftest import group_vocabulary
    from datasets import Dataset
    from transformers import AutoTokenizer

    words = group_vocabulary(0)
    documents = [" ".join(words[(row + i) % len(words)] for i in range(30)) + f" {row}" for row in range(12)]
    (tmp_path / "data" / "book-en").mkdir(parents=True)
    Dataset.from_dict({"text": documents}).to_parquet(tmp_path / "data" / "book-en" / "train-00000-of-00001.parquet")
    arguments = ["--sources", "book-en", "--model", tiny_model_path, "--max-length", "32", "--topic-sources"]
    main(["prepare", str(tmp_path), *arguments, "--validation-documents", "3", "--validation-seed", "7"])
    assert re.search(r" 3 validation documents: ", capsys.readouterr().out)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenized = []
    monkeypatch.setattr(prepare_module, "tokenize_shard", lambda *args: tokenized.append(args))
    read = dict(validation_documents=3, validation_seed=7, topic_sources=[])
    corpus = load_corpus(str(tmp_path), ["book-en"], tokenizer, 32, **read)
    assert tokenized == [] and len(corpus.validation) == 3 and corpus.held_out["book-en"]["seed"] == 7


def test_validation_documents_all_too_short_leave_the_source_unmeasured_with_a_warning(tmp_path, caplog):
    from conftest import group_vocabulary, make_tokenizer
    from datasets import Dataset

    words = group_vocabulary(0)
    folder = tmp_path / "data" / "book-en"
    folder.mkdir(parents=True)
    documents = [" ".join(words[(row + i) % len(words)] for i in range(30)) for row in range(6)]
    Dataset.from_dict({"text": documents}).to_parquet(folder / "train-00000-of-00001.parquet")
    Dataset.from_dict({"text": [f"w {word}" for word in words[:3]]}).to_parquet(
        folder / "validation-00000-of-00001.parquet"
    )
    with caplog.at_level(logging.WARNING, logger="hf_cpt.data.prepare"):
        corpus = load_corpus(str(tmp_path), ["book-en"], make_tokenizer(tmp_path / "tok"), 32, topic_sources=[])
    assert corpus.validation is None and len(corpus.train) > 0
    assert "Source 'book-en' has no validation document of 20 tokens or more; it is not measured" in caplog.text

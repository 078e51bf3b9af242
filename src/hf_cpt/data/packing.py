"""Tokenisation and topic-pure packing.

The paper's mixture ratios are token ratios. Packing every group (a source, or one topic of a
source) into its own full `max_length` blocks makes one block = `max_length` tokens of one group,
so a sampler that counts blocks per group controls the mixture exactly, in tokens.

Packed blocks carry `labels` beside `input_ids`, as transformers' `run_clm.py` (`group_texts`) makes
them, so they train with `default_data_collator` as well as with `collate_blocks`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets import ClassLabel, Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from hf_cpt.perplexity import IGNORE_INDEX

GROUP_COLUMN = "group"
TOPIC_SEPARATOR = "/"
PACK_BATCH_DOCUMENTS = 10_000
"""Documents packed together: each such batch of a group drops its tail shorter than a block."""


def group_name(source: str, topic: str | None = None) -> str:
    """`web-en/Law and Policy` for a topic of a source, `book-en` for a source packed whole."""
    return source if topic is None else f"{source}{TOPIC_SEPARATOR}{topic}"


def source_of(group: str) -> str:
    """The source a group belongs to (the inverse of `group_name` for the source part)."""
    return group.split(TOPIC_SEPARATOR, 1)[0]


@contextmanager
def datasets_progress_bars(enabled: bool) -> Iterator[bool]:
    """Show or hide `datasets`' progress bars inside the block, and restore the previous setting after it.

    Yields whether the bars were shown before the block, so that a nested block can bring back the
    caller's setting for one pass.

    Loading a corpus runs internal `datasets` passes (split generation of every source and split), each of
    which `datasets` would show as its own bar; `load_corpus` hides them and shows one bar per stage.
    """
    previously_enabled = not datasets.are_progress_bars_disabled()
    if enabled:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
    try:
        yield previously_enabled
    finally:
        if previously_enabled:
            datasets.enable_progress_bars()
        else:
            datasets.disable_progress_bars()


def require_eos(tokenizer: PreTrainedTokenizerBase) -> int:
    """The EOS id that separates packed documents; a tokenizer without one cannot pack."""
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"The tokenizer {type(tokenizer).__name__} has no eos_token; set tokenizer.eos_token "
            "(e.g. to '</s>') so packed documents can be separated."
        )
    return tokenizer.eos_token_id


def tokenize_documents(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_column: str = "text",
    min_doc_tokens: int = 20,
    max_doc_tokens: int | None = None,
    keep_columns: tuple[str, ...] = (),
    num_proc: int | None = None,
    desc: str = "Tokenizing",
) -> Dataset:
    """Tokenise documents (no special tokens) and drop those shorter than `min_doc_tokens` (released code: 20).

    `datasets.map` caches the result by fingerprint, so a second run over the same files is instant.
    `max_doc_tokens` truncates, for evaluation documents scored whole. One progress bar, titled `desc`,
    shows the tokenising pass; the drop is part of that stage and shows none.
    """
    keep = [column for column in keep_columns if column in dataset.column_names]

    def tokenize(batch: dict) -> dict:
        ids = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        if max_doc_tokens is not None:
            ids = [doc[:max_doc_tokens] for doc in ids]
        return {"input_ids": ids}

    tokenized = dataset.map(
        tokenize,
        batched=True,
        num_proc=num_proc,
        remove_columns=[c for c in dataset.column_names if c not in keep],
        desc=desc,
    )
    with datasets_progress_bars(False):
        return tokenized.filter(
            lambda ids: [len(doc) >= min_doc_tokens for doc in ids],
            input_columns="input_ids",
            batched=True,
            num_proc=num_proc,
        )


def pack_documents(
    tokenized: Dataset,
    eos_token_id: int,
    max_length: int,
    batch_size: int = PACK_BATCH_DOCUMENTS,
    num_proc: int | None = None,
    keep_tail: bool = False,
) -> Dataset:
    """Join documents with EOS and cut them into `max_length` blocks, with `labels` equal to `input_ids`.

    Packing runs per `map` batch of `batch_size` documents. By default the tail shorter than a block is
    dropped, so every block is full (at most one partial block per batch is lost: with 10k documents per
    batch, well under 0.1% of a real corpus). With `keep_tail` (for validation, where no token should be
    left out) the tail becomes a last block filled up with EOS tokens whose labels are -100; a tail of one
    token is dropped all the same, as a block's first token has no context and is never predicted.
    """

    def pack(batch: pa.Table) -> pa.Table:
        # Arrow hands over the batch as one flat token array plus offsets: no per-token Python work.
        documents = batch["input_ids"].combine_chunks()
        tokens = documents.flatten().to_numpy()
        ends = documents.offsets.to_numpy()[1:] - documents.offsets[0].as_py()
        if keep_tail:  # the filler's labels are negative: a signed type that holds every id (uint16 -> int32)
            tokens = tokens.astype(np.promote_types(tokens.dtype, np.int8), copy=False)
        stream = np.insert(tokens, ends, np.asarray(eos_token_id, dtype=tokens.dtype))
        usable = len(stream) // max_length * max_length
        if keep_tail and len(stream) - usable >= 2:
            usable += max_length
        offsets = pa.array(np.arange(0, usable + 1, max_length, dtype=np.int32))
        filler = usable - len(stream)
        if filler <= 0:
            input_ids = pa.ListArray.from_arrays(offsets, pa.array(stream[:usable]))
            return pa.table({"input_ids": input_ids, "labels": input_ids})
        labels = np.concatenate([stream, np.full(filler, IGNORE_INDEX, dtype=stream.dtype)])
        stream = np.concatenate([stream, np.full(filler, eos_token_id, dtype=stream.dtype)])
        return pa.table(
            {
                "input_ids": pa.ListArray.from_arrays(offsets, pa.array(stream)),
                "labels": pa.ListArray.from_arrays(offsets, pa.array(labels)),
            }
        )

    return (
        tokenized.with_format("arrow")
        .map(
            pack,
            batched=True,
            batch_size=batch_size,
            num_proc=num_proc,
            remove_columns=tokenized.column_names,
            desc=f"Packing into {max_length}-token blocks",
        )
        .with_format(None)
    )


def collate_blocks(features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack packed blocks: `input_ids`, `labels` (the blocks' own, else a copy of the inputs; the model
    shifts them) and `group` when present. The `DataLoader` collator of a plain `accelerate` loop."""
    input_ids = torch.tensor([feature["input_ids"] for feature in features], dtype=torch.long)
    if "labels" in features[0]:
        labels = torch.tensor([feature["labels"] for feature in features], dtype=torch.long)
    else:
        labels = input_ids.clone()
    batch = {"input_ids": input_ids, "labels": labels}
    if GROUP_COLUMN in features[0]:
        batch[GROUP_COLUMN] = torch.tensor([feature[GROUP_COLUMN] for feature in features], dtype=torch.long)
    return batch


def with_group_column(parts: Mapping[str, Dataset], names: Sequence[str] | None = None) -> Dataset:
    """Concatenate per-group datasets into one, with an integer `group` column whose names are the groups.

    The names travel with the dataset as a `ClassLabel`, so a trainer or sampler can read them
    from `dataset.features["group"].names` without any side channel. Pass `names` to give two
    datasets (training blocks and validation documents) the same group ids.
    """
    names = list(parts) if names is None else list(names)
    label = ClassLabel(names=names)
    # The column is written with its ClassLabel type at once: a cast afterwards would rewrite every part.
    with datasets_progress_bars(False):
        labelled = [
            part.add_column(GROUP_COLUMN, [names.index(name)] * len(part), feature=label)
            for name, part in parts.items()
        ]
        return concatenate_datasets(labelled)


def read_group_ids(dataset: Dataset) -> np.ndarray:
    """The `group` column as a NumPy array, read through Arrow in one call.

    `np.asarray(dataset["group"])` goes through the lazy `Column` of datasets 5 row by row: 25 s for
    2M rows here, against 5 ms this way (7 s when the dataset has an indices mapping, e.g. after `shuffle`).
    """
    return dataset.with_format("arrow", columns=[GROUP_COLUMN])[:][GROUP_COLUMN].to_numpy()


def regroup(dataset: Dataset, groups: Mapping[str, str]) -> Dataset:
    """`dataset` with each row's group `name` replaced by `groups.get(name, name)`.

    The names keep the corpus's order (its sources as they come, each source's groups sorted). Only the `group`
    column is rewritten (in memory, 8 bytes per row); the tokens stay where they are. The new fingerprint is a
    function of the old one and the mapping, so a resumed run sees the same dataset. A mapping that changes no
    name returns the dataset as it is.
    """
    names = dataset.features[GROUP_COLUMN].names
    mapped = [groups.get(name, name) for name in names]
    if mapped == names:
        return dataset
    sources = list(dict.fromkeys(source_of(name) for name in names))
    merged = sorted(set(mapped), key=lambda name: (sources.index(source_of(name)), name))
    lookup = np.array([merged.index(name) for name in mapped], dtype=np.int64)
    fingerprint = hashlib.sha256(json.dumps([dataset._fingerprint, mapped]).encode()).hexdigest()[:16]
    return dataset.remove_columns(GROUP_COLUMN).add_column(
        GROUP_COLUMN, lookup[read_group_ids(dataset)], feature=ClassLabel(names=merged), new_fingerprint=fingerprint
    )


def group_sizes(group_ids: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    """Rows per group name, from the `group` column already read into an array (read it once)."""
    counts = np.bincount(np.asarray(group_ids, dtype=np.int64), minlength=len(names))
    return dict(zip(names, counts.tolist(), strict=True))

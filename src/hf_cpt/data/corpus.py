"""From a corpus on disk or on the Hub to topic-pure training blocks and per-group validation documents."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, concatenate_datasets
from datasets.utils import tqdm
from transformers import PreTrainedTokenizerBase

from hf_cpt.data.packing import (
    GROUP_COLUMN,
    datasets_progress_bars,
    pack_documents,
    read_group_ids,
    require_eos,
    split_by_topic,
    tokenize_documents,
    with_group_column,
)
from hf_cpt.data.sources import load_source

logger = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Training blocks and validation documents of several sources, sharing one set of group ids.

    Attributes:
        train: packed blocks, columns `input_ids` (`max_length` tokens each), `labels` (equal to
            `input_ids`, as `run_clm.py` makes them, for `default_data_collator`) and `group`.
        validation: whole documents (truncated to `max_length`), columns `input_ids` and `group`: what the
            topic mixture measures per topic; None when no source has a validation split.
        max_length: tokens per training block.
        eos_token_id: the token that separates packed documents.
    """

    train: Dataset
    validation: Dataset | None
    max_length: int
    eos_token_id: int

    @property
    def group_names(self) -> list[str]:
        return self.train.features[GROUP_COLUMN].names

    def validation_blocks(self, max_length: int | None = None) -> Dataset:
        """The validation documents packed per group, for a standard eval loop (`Trainer(eval_dataset=...)`).

        Columns `input_ids`, `labels` and `group`, `max_length` tokens per block (default: the training
        block length). Documents are joined with EOS as in training; each group's last block is filled up
        with EOS tokens whose labels are -100, so no validation token is left out and the filler is never
        scored. Each document is as loaded, i.e. truncated to the corpus' `max_length`.
        """
        if self.validation is None:
            raise ValueError(
                "The corpus has no validation documents; add validation files (data/<source>/validation*.jsonl "
                "or .parquet) to the sources."
            )
        max_length = self.max_length if max_length is None else max_length
        if max_length < 2:
            raise ValueError(f"max_length is {max_length}; set it to the block length in tokens (e.g. 2048).")
        groups = read_group_ids(self.validation)
        parts = {
            self.group_names[group]: pack_documents(
                self.validation.select(np.flatnonzero(groups == group)).select_columns(["input_ids"]),
                self.eos_token_id,
                max_length,
                keep_tail=True,
            )
            for group in np.unique(groups)
        }
        return with_group_column(parts, self.group_names)


def load_corpus(
    path: str,
    sources: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    text_column: str = "text",
    topic_column: str | None = "topic",
    topic_sources: Iterable[str] = (),
    min_doc_tokens: int = 20,
    num_proc: int | None = None,
    extra_train: Mapping[str, Dataset] | None = None,
    source_paths: Mapping[str, str] | None = None,
) -> Corpus:
    """Load, tokenise and pack every source; sources in `topic_sources` are packed per topic.

    The training blocks carry `labels` equal to `input_ids` (as `run_clm.py`'s `group_texts`), so they
    train with `default_data_collator`, `collate_blocks` or `CPTTrainer`; `Corpus.validation_blocks()`
    packs the validation documents the same way for a standard eval loop.

    Args:
        path: Hub dataset id or local folder laid out as `data/<source>/<split>*.parquet|jsonl`.
        sources: the sources to load (every source a stage names).
        max_length: tokens per training block; validation documents are truncated to it.
        topic_column: column with the topic label of each document in `topic_sources`.
        min_doc_tokens: documents with fewer tokens are dropped (paper's code: 20).
        extra_train: documents (a `text_column`) added to a source's training split, e.g. synthetic QA
            pairs generated for this run.
        source_paths: sources read from another corpus (same layout) than `path`, e.g. web documents
            whose topics a classifier predicted for this run.

    Progress: one bar over the sources, and one per source for tokenising its training documents (the
    pass whose time grows with the corpus, hours on the full one); `datasets`' bars for the internal
    passes (split generation, per-topic selection, packing, casts) are hidden. After
    `datasets.disable_progress_bars()`, none is shown.
    """
    eos_token_id = require_eos(tokenizer)
    topic_sources = set(topic_sources)
    train_parts: dict[str, Dataset] = {}
    validation_parts: dict[str, Dataset] = {}
    # Created before the internal bars are hidden, so that it follows the caller's setting.
    progress = tqdm(list(sources), desc="Loading corpus", unit="source")
    with datasets_progress_bars(False) as bars_shown, progress:
        for source in progress:
            progress.set_postfix_str(source)
            topic = topic_column if source in topic_sources else None
            keep = (topic,) if topic else ()
            for split, parts in (("train", train_parts), ("validation", validation_parts)):
                source_path = (source_paths or {}).get(source, path)
                raw = load_source(source_path, source, split, text_column, required=split == "train", num_proc=num_proc)
                if raw is None:
                    continue
                if split == "train" and extra_train and len(extra_train.get(source, [])):
                    raw = _with_extra(raw, extra_train[source], source, text_column)
                if topic and topic not in raw.column_names:
                    raise ValueError(
                        f"topic_column {topic!r} is not a column of source {source!r} (columns: "
                        f"{raw.column_names}); label its documents or leave it out of topic_sources."
                    )
                with datasets_progress_bars(bars_shown and split == "train"):
                    tokenized = tokenize_documents(
                        raw,
                        tokenizer,
                        text_column,
                        min_doc_tokens,
                        max_doc_tokens=max_length if split == "validation" else None,
                        keep_columns=keep,
                        num_proc=num_proc,
                        desc=f"Tokenizing {source}",
                    )
                for group, documents in split_by_topic(tokenized, source, topic).items():
                    if split == "train":
                        parts[group] = pack_documents(documents, eos_token_id, max_length, num_proc=num_proc)
                        if len(parts[group]) == 0:
                            raise ValueError(
                                f"Source group {group!r} has fewer than max_length={max_length} tokens after "
                                f"dropping documents under {min_doc_tokens} tokens; add text to it or lower "
                                "max_length."
                            )
                    else:
                        parts[group] = documents.select_columns(["input_ids"])
    names = list(train_parts) + [name for name in validation_parts if name not in train_parts]
    train = with_group_column(train_parts, names)
    validation = with_group_column(validation_parts, names) if validation_parts else None
    logger.info("Packed %d blocks of %d tokens in %d groups.", len(train), max_length, len(train_parts))
    return Corpus(train=train, validation=validation, max_length=max_length, eos_token_id=eos_token_id)


def _with_extra(raw: Dataset, extra: Dataset, source: str, text_column: str) -> Dataset:
    """The source's documents followed by the extra ones (their columns reduced to the source's)."""
    missing = [column for column in raw.column_names if column not in extra.column_names]
    if missing:
        raise ValueError(
            f"The documents added to source {source!r} lack its columns {missing}; give them the same columns."
        )
    logger.info("Source %s: %d documents added to its %d.", source, len(extra), len(raw))
    return concatenate_datasets([raw, extra.select_columns(raw.column_names).cast(raw.features)])

"""From a corpus on disk or on the Hub to topic-pure training blocks and per-group validation documents."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from hf_cpt.data.packing import (
    GROUP_COLUMN,
    TOPIC_SEPARATOR,
    pack_documents,
    read_group_ids,
    regroup,
    source_of,
    with_group_column,
)
from hf_cpt.data.prepare import load_prepared, prepare_corpus

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
        held_out: per source that had no validation split, the documents held out of its training split as
            validation (`hold_out_validation`'s record: seed, count asked for, and per group how many and which
            rows); None when none was.
        block_labels: per training block, the value of its `pack_by` column (e.g. its discipline) for the blocks
            of a source packed by one, "" for the others; None when no source is. The discipline curricula
            (`PB`, `BP`, `PBP`) order by them.
    """

    train: Dataset
    validation: Dataset | None
    max_length: int
    eos_token_id: int
    held_out: dict[str, dict] | None = None
    block_labels: np.ndarray | None = None

    @property
    def group_names(self) -> list[str]:
        return self.train.features[GROUP_COLUMN].names

    def regrouped(self, groups: Mapping[str, str]) -> Corpus:
        """The corpus with group `name` counted as `groups.get(name, name)`, in training and validation alike
        (see `packing.regroup`): e.g. unknown topics as the source's `Others` (`topics.check_corpus_topics`)."""
        validation = regroup(self.validation, groups) if self.validation is not None else None
        return dataclasses.replace(self, train=regroup(self.train, groups), validation=validation)

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
    prepared_dir: str | os.PathLike[str] | None = None,
    split_across_ranks: bool = False,
    validation_documents: int | None = None,
    validation_seed: int = 0,
    pack_by: Mapping[str, str] | None = None,
) -> Corpus:
    """Load, tokenise and pack every source; sources in `topic_sources` are packed per topic.

    The work is `prepare_corpus`'s: done once into a prepared folder (by default in the hf-cpt cache, keyed by
    the documents, the tokenizer and the settings, which is where `hf-cpt prepare` writes too), then memory-mapped.
    A second call with the same arguments, in this process, another rank or a later stage, only maps the folder.

    The training blocks carry `labels` equal to `input_ids` (as `run_clm.py`'s `group_texts`), so they
    train with `default_data_collator`, `collate_blocks` or `CPTTrainer`; `Corpus.validation_blocks()`
    packs the validation documents the same way for a standard eval loop.

    Args:
        path: Hub dataset id or local folder laid out as `data/<source>/<split>*.parquet|jsonl`.
        sources: the sources to load (every source a stage names).
        max_length: tokens per training block; validation documents are truncated to it.
        topic_column: column with the topic label of each document in `topic_sources`.
        min_doc_tokens: documents with fewer tokens are dropped (released code: 20; the paper gives no number).
        num_proc: worker processes that tokenise (None: this process alone).
        extra_train: documents (a `text_column`) added to a source's training split, e.g. synthetic QA
            pairs generated for this run.
        source_paths: sources read from another corpus (same layout) than `path`, e.g. web documents
            whose topics a classifier predicted for this run.
        prepared_dir: the prepared folder to use (and to write when it is not complete yet).
        split_across_ranks: share the tokenising among the ranks of `torch.distributed`; then every rank calls
            `load_corpus` at once (not under `main_process_first`). By default the first caller does the work and
            the others find it done.
        validation_documents: for a source without a validation split (the released corpus has none), hold out
            this many of its training documents per group (per topic of a topic source) as validation; they leave
            training, and `Corpus.held_out` says which. None or 0: such a source has no validation documents.
        validation_seed: seeds that draw; with the documents, it alone decides them (same on every rank and run).

    Progress: one bar over the sources, and one per source for tokenising its training documents (the
    pass whose time grows with the corpus); `datasets`' bars for the internal passes (split generation)
    are hidden. After `datasets.disable_progress_bars()`, none is shown.
    """
    folder = prepare_corpus(
        path, sources, tokenizer, max_length, text_column, topic_column, topic_sources, min_doc_tokens, num_proc,
        extra_train, source_paths, output_dir=prepared_dir, split_across_ranks=split_across_ranks,
        validation_documents=validation_documents, validation_seed=validation_seed, group_columns=pack_by,
    )  # fmt: skip
    train, validation, manifest = load_prepared(folder)
    logger.info("Loaded %d blocks of %d tokens in %d groups.", len(train), max_length, len(manifest["train_blocks"]))
    corpus = Corpus(
        train=train,
        validation=validation,
        max_length=max_length,
        eos_token_id=manifest["eos_token_id"],
        held_out=manifest.get("validation_held_out"),
    )
    return merge_packed_groups(corpus, pack_by) if pack_by else corpus


def merge_packed_groups(corpus: Corpus, sources: Iterable[str]) -> Corpus:
    """The corpus with the groups of each of `sources` (`web-en/a`, `web-en/b`) merged into one group per source
    (`web-en`), their values kept as `Corpus.block_labels` (`a`, `b`, "" for the other blocks).

    The blocks stay as packed, one value each; only the `group` column changes, in training and validation alike,
    so the mixture draws the source as one group and a curriculum orders its blocks by their values.
    """
    sources = set(sources)
    names = corpus.group_names
    packed = {name: source_of(name) for name in names if source_of(name) in sources and TOPIC_SEPARATOR in name}
    labels = np.array([name.split(TOPIC_SEPARATOR, 1)[1] if name in packed else "" for name in names], dtype=object)
    block_labels = labels[read_group_ids(corpus.train)].astype(str)
    return dataclasses.replace(corpus.regrouped(packed), block_labels=block_labels)

"""Preparing a corpus once: tokenised, packed per group and written as token arrays that every rank memory-maps.

`load_corpus` used to tokenise and pack inside the training run, through `datasets.map` and one filter pass per
topic, while every other rank waited. `prepare_corpus` does that work once, in a way that scales with the corpus:

1. The documents of each source and split are cut into shards of `shard_size`. Each shard is tokenised with one
   batch call of the fast tokenizer, its documents under `min_doc_tokens` are dropped, and the rest are ordered
   by topic in one stable sort (no filter pass per topic). The shard is written atomically; a killed run finds the
   finished shards and redoes only the others. With `split_across_ranks`, rank r of `torch.distributed` takes
   shards r, r + world, ...; within a rank, `num_proc` worker processes share them.
2. From the shards' document lengths alone, the layout of every block is computed, then the tokens are copied
   slice by slice into one `(blocks, max_length)` array. The packing is `pack_documents`': per group, batches of
   `PACK_BATCH_DOCUMENTS` documents in corpus order are joined with EOS and cut into full blocks, each batch's
   shorter tail dropped. The result depends on the documents, the tokenizer and the settings, not on the shard
   size, `num_proc` or the number of ranks.

A prepared folder holds `train.npy` (the blocks), `validation.npy` with `validation_offsets.npy` (the validation
documents, truncated to `max_length`, one after the other) and `corpus.json` (group names and counts), written
last: a folder with `corpus.json` is complete. Tokens take 2 bytes each (uint16) when every id of the vocabulary
fits, else 4 (uint32). `load_prepared` maps the arrays read-only into `datasets.Dataset`s without copying them,
so every rank of every stage shares one copy in the page cache.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetInfo, Features, LargeList, List, Value, concatenate_datasets
from datasets.table import InMemoryTable
from datasets.utils import tqdm
from filelock import FileLock
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from hf_cpt.data.holdout import hold_out_validation
from hf_cpt.data.packing import (
    GROUP_COLUMN,
    PACK_BATCH_DOCUMENTS,
    datasets_progress_bars,
    group_name,
    require_eos,
)
from hf_cpt.data.sources import load_source
from hf_cpt.utils.distributed import barrier, broadcast_object, rank_and_world
from hf_cpt.utils.environment import cache_dir
from hf_cpt.utils.io import atomic_path, write_text_atomically
from hf_cpt.utils.resumable import tokenizer_fingerprint

logger = logging.getLogger(__name__)

PREPARED_FORMAT = 1
"""The layout version of a prepared folder; a folder of another version is refused, not misread."""
MANIFEST_NAME = "corpus.json"
DEFAULT_SHARD_SIZE = 2048
"""Documents per shard: the unit of work of a worker and of resumption (a few MB of tokens)."""
SPLITS = ("train", "validation")
WORD_CACHE_SIZE = 200_000
"""Words whose tokens a worker's BPE model remembers (tens of MB at most): most of a corpus's running words."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every token id of a vocabulary of `vocab_size` fits in 2 bytes (at most 65,536 ids), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def prepared_dir(key: str) -> Path:
    """Where `prepare_corpus` keeps a corpus by default: `<hf-cpt cache>/prepared/<key>`."""
    return cache_dir() / "prepared" / key


@dataclass(frozen=True)
class _ShardSettings:
    """What tokenising one shard needs besides its documents."""

    text_column: str
    topic_column: str | None
    min_doc_tokens: int
    max_doc_tokens: int | None  # validation documents are truncated to a block
    eos_token_id: int | None  # training documents end with EOS, as packing joins them
    dtype: str


Encode = Callable[[list[str]], list[list[int]]]


def batch_encoder(tokenizer: PreTrainedTokenizerBase) -> Encode:
    """A function giving the token ids of many documents at once: `tokenizer(texts, add_special_tokens=False)`'s.

    For a fast tokenizer, it calls `encode_batch_fast` of a copy of the Rust tokenizer with truncation and
    padding off (a transformers call turns them off too): the same ids, without the character offsets and the
    per-document dictionaries that transformers builds around them. The copy's BPE model memoises the tokens
    of `WORD_CACHE_SIZE` words instead of the default 10,000, so the frequent words of a large corpus are
    split into tokens once, not once per document.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return lambda texts: tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    backend = Tokenizer.from_str(backend.to_str())
    backend.no_truncation()
    backend.no_padding()
    resize_cache = getattr(backend.model, "_resize_cache", None)  # BPE models (tokenizers >= 0.20)
    if resize_cache is not None:
        resize_cache(WORD_CACHE_SIZE)
    return lambda texts: [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)]


def tokenize_shard(
    texts: Sequence[str],
    topics: Sequence[Any] | None,
    encode: Encode,
    settings: _ShardSettings,
    source: str,
) -> dict[str, np.ndarray]:
    """One shard's documents as arrays: `tokens` (the kept documents one after the other, ordered by topic),
    `lengths` (tokens per kept document), `topics` (the shard's topic names, sorted) and `counts` (documents
    per topic). The tokens are those of `tokenize_documents` (no special tokens), plus EOS after each training
    document."""
    ids = encode(list(texts))
    if settings.max_doc_tokens is not None:
        ids = [document[: settings.max_doc_tokens] for document in ids]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    kept = np.flatnonzero(lengths >= settings.min_doc_tokens)
    if topics is None:
        names, codes = np.array([""] if len(kept) else [], dtype=str), np.zeros(len(kept), dtype=np.int64)
    else:
        kept_topics = [topics[index] for index in kept]
        if any(topic is None or topic == "" for topic in kept_topics):
            raise ValueError(
                f"Source {source!r} has documents with an empty {settings.topic_column!r}; label every document "
                "or leave this source out of topic_sources."
            )
        names, codes = np.unique(np.asarray(kept_topics, dtype=str), return_inverse=True)
    order = kept[np.argsort(codes, kind="stable")]  # the topic groups, each in document order, in one pass
    dtype = np.dtype(settings.dtype)
    tokens = np.fromiter(
        itertools.chain.from_iterable(ids[index] for index in order), dtype=dtype, count=int(lengths[order].sum())
    )
    kept_lengths = lengths[order]
    if settings.eos_token_id is not None:
        tokens = np.insert(tokens, np.cumsum(kept_lengths), np.asarray(settings.eos_token_id, dtype=dtype))
        kept_lengths = kept_lengths + 1
    return {
        "tokens": tokens,
        "lengths": kept_lengths,
        "topics": names,
        "counts": np.bincount(codes, minlength=len(names)),
    }


@dataclass
class _SplitJob:
    """The shards of one split of one source."""

    source: str
    split: str
    folder: Path
    num_documents: int
    shard_size: int
    topic: bool

    @property
    def starts(self) -> range:
        return range(0, self.num_documents, self.shard_size)

    def path(self, start: int) -> Path:
        return self.folder / f"shard-{start:012d}.npz"


# The work of the worker processes, set before they fork (so nothing large is pickled) and cleared after.
_WORK: tuple[Dataset, Encode, _ShardSettings, _SplitJob] | None = None


def _do_shard(start: int) -> int:
    """Tokenise and write the shard that begins at document `start`; returns its document count."""
    assert _WORK is not None
    raw, encode, settings, job = _WORK
    stop = min(start + job.shard_size, job.num_documents)
    batch = raw.with_format("arrow")[start:stop]
    topics = batch[settings.topic_column].to_pylist() if settings.topic_column else None
    arrays = tokenize_shard(batch[settings.text_column].to_pylist(), topics, encode, settings, job.source)
    with atomic_path(job.path(start)) as temporary:
        np.savez(temporary, **arrays)
    return stop - start


def _run_shards(todo: list[int], num_proc: int | None, progress: tqdm) -> None:
    """Do the shards in `todo` here (`num_proc` None or 1) or in `num_proc` forked worker processes."""
    if not num_proc or num_proc <= 1 or len(todo) <= 1:
        for start in todo:
            progress.update(_do_shard(start))
        return
    # Each worker tokenises single-threaded: num_proc processes, not num_proc times the tokenizer's threads.
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        pool = multiprocessing.get_context("fork").Pool(min(num_proc, len(todo)))
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous
    with pool:
        for count in pool.imap_unordered(_do_shard, todo):
            progress.update(count)


def _with_extra(raw: Dataset, extra: Dataset, source: str, text_column: str) -> Dataset:
    """The source's documents followed by the extra ones (their columns reduced to the source's)."""
    missing = [column for column in raw.column_names if column not in extra.column_names]
    if missing:
        raise ValueError(
            f"The documents added to source {source!r} lack its columns {missing}; give them the same columns."
        )
    logger.info("Source %s: %d documents added to its %d.", source, len(extra), len(raw))
    return concatenate_datasets([raw, extra.select_columns(raw.column_names).cast(raw.features)])


def prepare_corpus(
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
    output_dir: str | os.PathLike[str] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    split_across_ranks: bool = False,
    validation_documents: int | None = None,
    validation_seed: int = 0,
    group_columns: Mapping[str, str] | None = None,
) -> Path:
    """Tokenise and pack every source into a prepared folder (see the module docstring) and return the folder.

    The arguments up to `source_paths` are `load_corpus`'s. A folder that is complete already is returned as it
    is; one that a killed run left is finished, redoing only the shards that have no file.

    Args:
        output_dir: the prepared folder; default `<hf-cpt cache>/prepared/<key>`, where `key` is a hash of the
            documents (the sources' dataset fingerprints), the tokenizer and the settings, so that
            `load_corpus` with the same arguments finds what `hf-cpt prepare` wrote.
        shard_size: documents per shard (the unit of work and of resumption; no effect on the result).
        split_across_ranks: share the shards among the ranks of `torch.distributed` (a collective call: every
            rank must call it, none under `main_process_first`). False: this process does all the work left.
        validation_documents: for a source without a validation split, hold out this many of its training
            documents per group (per topic of a topic source) as its validation split (`hold_out_validation`);
            the manifest's `validation_held_out` records which. None or 0: such a source has no validation.
        validation_seed: seeds that draw.
        group_columns: source -> the column its documents are packed by, one group per value, as `topic_column`
            packs `topic_sources` (e.g. `{"synthesis-en": "discipline"}`: blocks of one discipline each).
    """
    if max_length < 2:
        raise ValueError(f"max_length is {max_length}; set it to the block length in tokens (e.g. 2048).")
    if shard_size < 1:
        raise ValueError(f"shard_size is {shard_size}; set it to a positive number of documents (e.g. 2048).")
    eos_token_id = require_eos(tokenizer)
    if validation_documents is not None and validation_documents < 0:
        raise ValueError(
            f"validation_documents is {validation_documents}; give the documents to hold out per source (e.g. 1000), "
            "or 0 for none."
        )
    sources, topic_sources = list(sources), set(topic_sources)
    global _WORK
    rank, world = rank_and_world() if split_across_ranks else (0, 1)
    dtype = token_dtype(len(tokenizer))
    encode = batch_encoder(tokenizer)
    # Created before the internal bars are hidden, so that it follows the caller's setting.
    progress = tqdm(sources, desc="Loading corpus", unit="source", disable=rank != 0)
    with datasets_progress_bars(False) as bars_shown, progress:
        raws: dict[tuple[str, str], Dataset] = {}
        to_hold_out: dict[str, tuple[str | None, int]] = {}  # source -> (its topic column, its own documents)
        fingerprints: list[Any] = [PREPARED_FORMAT, tokenizer_fingerprint(tokenizer), max_length, text_column,
                                   min_doc_tokens]  # fmt: skip
        for source in sources:
            source_documents = 0  # the source's own training documents, before any added to them
            topic = _group_column(source, topic_column, topic_sources, group_columns)
            for split in SPLITS:
                raw = load_source(
                    (source_paths or {}).get(source, path), source, split, text_column, split == "train", num_proc
                )
                if raw is None and split == "validation" and validation_documents:
                    to_hold_out[source] = (topic, source_documents)  # drawn below, once the folder needs writing
                    fingerprints.append([source, split, topic, "held out", validation_documents, validation_seed])
                    continue
                if raw is None:
                    continue
                source_documents = len(raw)
                if split == "train" and extra_train and len(extra_train.get(source, [])):
                    raw = _with_extra(raw, extra_train[source], source, text_column)
                if topic and topic not in raw.column_names:
                    raise ValueError(
                        f"topic_column {topic!r} is not a column of source {source!r} (columns: "
                        f"{raw.column_names}); label its documents or leave it out of topic_sources."
                    )
                raws[source, split] = raw.select_columns([text_column, *([topic] if topic else [])])
                fingerprints.append([source, split, topic, raw._fingerprint, len(raw)])
        key = hashlib.blake2b(json.dumps(fingerprints).encode(), digest_size=16).hexdigest()
        if split_across_ranks:
            key = broadcast_object(key)  # one folder for every rank (a dataset's fingerprint can differ by process)
        folder = Path(output_dir) if output_dir is not None else prepared_dir(key)
        # Processes that prepare the same folder each alone take turns: the later ones find it complete.
        folder.parent.mkdir(parents=True, exist_ok=True)
        with nullcontext() if split_across_ranks else FileLock(str(folder) + ".lock"):
            if _is_prepared(folder, key):
                logger.info("Corpus already prepared in %s.", folder)
                return folder
            held_out = {}
            for source, (topic, source_documents) in to_hold_out.items():
                raws[source, "train"], raws[source, "validation"], held_out[source] = hold_out_validation(
                    raws[source, "train"], source, topic, validation_documents, validation_seed, source_documents
                )
                logger.info(
                    "%s: %d documents held out for validation.", source, sum(held_out[source]["documents"].values())
                )
            jobs, tokenised = [], 0
            for source in progress:
                progress.set_postfix_str(source)
                for split in SPLITS:
                    if (source, split) not in raws:
                        continue
                    raw = raws[source, split]
                    topic = _group_column(source, topic_column, topic_sources, group_columns)
                    job = _SplitJob(source, split, folder / "shards" / f"{source}.{split}", len(raw), shard_size,
                                    topic is not None)  # fmt: skip
                    jobs.append(job)
                    settings = _ShardSettings(text_column, topic, min_doc_tokens,
                                              max_length if split == "validation" else None,
                                              eos_token_id if split == "train" else None, dtype.str)  # fmt: skip
                    mine = job.starts[rank::world]
                    todo = [start for start in mine if not job.path(start).is_file()]
                    if len(todo) < len(mine):
                        logger.info("%s %s: %d of %d shards already done.", source, split, len(mine) - len(todo),
                                    len(mine))  # fmt: skip
                    with datasets_progress_bars(bars_shown and split == "train" and rank == 0):
                        bar = tqdm(total=sum(min(shard_size, len(raw) - start) for start in todo),
                                   desc=f"Tokenizing {source}", unit="doc")  # fmt: skip
                    tokenised += len(todo)
                    _WORK = (raw, encode, settings, job)
                    try:
                        with bar:
                            _run_shards(todo, num_proc, bar)
                    finally:
                        _WORK = None
            logger.info("Rank %d of %d tokenised %d shards.", rank, world, tokenised)
            if split_across_ranks:
                barrier()
            # Every rank checks the layout (so that an error is raised everywhere); rank 0 writes it.
            layout = _Layout(jobs, max_length, min_doc_tokens)
            if rank == 0:
                layout.write(folder, key, dtype, eos_token_id, held_out or None)
            if split_across_ranks:
                barrier()
    return folder


def _group_column(
    source: str, topic_column: str | None, topic_sources: set[str], group_columns: Mapping[str, str] | None
) -> str | None:
    """The column `source` is packed by: its `group_columns` entry, else `topic_column` for a topic source."""
    if group_columns and source in group_columns:
        return group_columns[source]
    return topic_column if source in topic_sources else None


def _is_prepared(folder: Path, key: str) -> bool:
    """Whether `folder` holds the complete corpus of `key`; a folder holding another corpus is an error."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    if json.loads(manifest.read_text(encoding="utf-8")).get("key") != key:
        raise ValueError(
            f"The prepared folder {str(folder)!r} holds another corpus (other documents, tokenizer, max_length or "
            "settings); give another output folder (prepared_dir, --output) or remove it."
        )
    return True


class _Layout:
    """Where every shard's documents go: the groups in order, their blocks (training) or documents (validation).

    Group order: the sources in the order given, each source's topics sorted; the validation rows follow the same
    order, and groups that only have validation documents are named after the training groups.
    """

    def __init__(self, jobs: list[_SplitJob], max_length: int, min_doc_tokens: int) -> None:
        self.max_length = max_length
        self.jobs = jobs
        # Per split: group name -> its runs, each (job, shard start, first token in the shard, lengths).
        self.runs: dict[str, dict[str, list[tuple[_SplitJob, int, int, np.ndarray]]]] = {s: {} for s in SPLITS}
        for job in jobs:
            per_group: dict[str, list[tuple[_SplitJob, int, int, np.ndarray]]] = {}
            for start in job.starts:
                with np.load(job.path(start)) as shard:
                    lengths, topics, counts = shard["lengths"], shard["topics"].tolist(), shard["counts"]
                bounds = np.concatenate([[0], np.cumsum(counts)])
                token_starts = np.concatenate([[0], np.cumsum(lengths)])
                for index, topic in enumerate(topics):
                    first, last = bounds[index], bounds[index + 1]
                    name = group_name(job.source, topic if job.topic else None)
                    per_group.setdefault(name, []).append((job, start, int(token_starts[first]), lengths[first:last]))
            if not job.topic and not per_group:  # a source whose documents were all dropped still has its group
                per_group[group_name(job.source)] = []
            for name in sorted(per_group) if job.topic else per_group:
                self.runs[job.split][name] = per_group[name]
        self.train_blocks = {name: self._pack_plan(runs) for name, runs in self.runs["train"].items()}
        for name, plan in self.train_blocks.items():
            if plan[3] == 0:
                raise ValueError(
                    f"Source group {name!r} has fewer than max_length={max_length} tokens after dropping documents "
                    f"under {min_doc_tokens} tokens; add text to it or lower max_length."
                )
        for name, runs in self.runs["validation"].items():
            if not runs:
                logger.warning(
                    "Source %r has no validation document of %d tokens or more; it is not measured (lower "
                    "min_doc_tokens or give it longer validation documents).", name, min_doc_tokens,
                )  # fmt: skip
        self.names = list(self.runs["train"]) + [
            name for name in self.runs["validation"] if name not in self.runs["train"]
        ]

    def _pack_plan(self, runs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Per packing batch of the group: its first token in the group's stream, its usable (whole-block) tokens,
        and its first token in the group's blocks; plus the group's block count."""
        lengths = np.concatenate([run[3] for run in runs]) if runs else np.zeros(0, dtype=np.int64)
        stream = np.concatenate([[0], np.cumsum(lengths)])
        firsts = np.arange(0, len(lengths), PACK_BATCH_DOCUMENTS)
        begins = stream[firsts]
        ends = stream[np.minimum(firsts + PACK_BATCH_DOCUMENTS, len(lengths))]
        usable = (ends - begins) // self.max_length * self.max_length
        out = np.concatenate([[0], np.cumsum(usable)])[:-1]
        return begins, usable, out, int(usable.sum()) // self.max_length

    def write(
        self, folder: Path, key: str, dtype: np.dtype, eos_token_id: int, held_out: Mapping[str, Any] | None = None
    ) -> None:
        """Write the blocks, the validation documents and, last, the manifest (with the record of the documents
        `held_out` of training as validation); then remove the shards."""
        total_blocks = sum(plan[3] for plan in self.train_blocks.values())
        with atomic_path(folder / "train.npy") as temporary:
            blocks = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=(total_blocks, self.max_length))
            self._copy_train(blocks.reshape(-1))
            blocks.flush()
            del blocks
        validation_documents = {
            name: sum(len(run[3]) for run in runs) for name, runs in self.runs["validation"].items()
        }
        has_validation = any(job.split == "validation" for job in self.jobs)
        if has_validation:
            lengths = [run[3] for runs in self.runs["validation"].values() for run in runs]
            offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths) if lengths else [])]).astype(np.int64)
            if offsets[-1] > np.iinfo(np.int32).max:
                raise ValueError(
                    f"The validation split holds {offsets[-1]:,} tokens, more than the 2**31 an Arrow list takes; "
                    "keep fewer validation documents."
                )
            with atomic_path(folder / "validation_offsets.npy") as temporary:
                np.save(temporary, offsets)
            with atomic_path(folder / "validation.npy") as temporary:
                tokens = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=(int(offsets[-1]),))
                self._copy_validation(tokens)
                tokens.flush()
                del tokens
        manifest = {
            "format": PREPARED_FORMAT,
            "key": key,
            "max_length": self.max_length,
            "eos_token_id": eos_token_id,
            "dtype": dtype.name,
            "group_names": self.names,
            "train_blocks": {name: plan[3] for name, plan in self.train_blocks.items()},
            "validation_documents": validation_documents if has_validation else None,
            "validation_held_out": held_out,
        }
        write_text_atomically(folder / MANIFEST_NAME, json.dumps(manifest, indent=1))
        shutil.rmtree(folder / "shards", ignore_errors=True)
        logger.info("Prepared %d blocks of %d tokens in %d groups in %s.", total_blocks, self.max_length,
                    len(self.train_blocks), folder)  # fmt: skip

    def _by_shard(self, split: str) -> dict[Path, list[tuple[str, int, int, np.ndarray]]]:
        """The runs of a split by shard file (so that each shard is read once): (group, first document of the run in
        its group, first token of the run in the shard, lengths)."""
        shards: dict[Path, list[tuple[str, int, int, np.ndarray]]] = {}
        for name, runs in self.runs[split].items():
            first_document = 0
            for job, start, token_start, lengths in runs:
                shards.setdefault(job.path(start), []).append((name, first_document, token_start, lengths))
                first_document += len(lengths)
        return shards

    def _copy_train(self, out: np.ndarray) -> None:
        group_base, base = {}, 0
        for name, plan in self.train_blocks.items():
            group_base[name], base = base, base + plan[3] * self.max_length
        streams = {
            name: np.concatenate([[0], np.cumsum(np.concatenate([run[3] for run in runs]))]) if runs else np.zeros(1)
            for name, runs in self.runs["train"].items()
        }
        for shard_path, runs in self._by_shard("train").items():
            with np.load(shard_path) as shard:
                tokens = shard["tokens"]
            for name, d0, token_start, lengths in runs:
                begins, usable, block_out, _ = self.train_blocks[name]
                stream, d1 = streams[name], d0 + len(lengths)
                for batch in range(d0 // PACK_BATCH_DOCUMENTS, (d1 - 1) // PACK_BATCH_DOCUMENTS + 1):
                    a0 = max(d0, batch * PACK_BATCH_DOCUMENTS)
                    a1 = min(d1, (batch + 1) * PACK_BATCH_DOCUMENTS)
                    p0, p1 = int(stream[a0]), min(int(stream[a1]), int(begins[batch] + usable[batch]))
                    if p1 <= p0:
                        continue
                    target = group_base[name] + int(block_out[batch]) + p0 - int(begins[batch])
                    source = token_start + p0 - int(stream[d0])
                    out[target : target + p1 - p0] = tokens[source : source + p1 - p0]

    def _copy_validation(self, out: np.ndarray) -> None:
        group_base, base = {}, 0
        for name, runs in self.runs["validation"].items():
            group_base[name] = base
            base += int(sum(run[3].sum() for run in runs))
        streams = {  # a group whose validation documents were all too short has no runs, and no tokens
            name: np.concatenate([[0], np.cumsum(np.concatenate([run[3] for run in runs]))]) if runs else np.zeros(1)
            for name, runs in self.runs["validation"].items()
        }
        for shard_path, runs in self._by_shard("validation").items():
            with np.load(shard_path) as shard:
                tokens = shard["tokens"]
            for name, d0, token_start, lengths in runs:
                target = group_base[name] + int(streams[name][d0])
                size = int(lengths.sum())
                out[target : target + size] = tokens[token_start : token_start + size]


def _mapped(path: Path) -> np.ndarray:
    """A saved array memory-mapped read-only (an empty one read, as an empty file cannot be mapped)."""
    array = np.load(path, mmap_mode="r")
    return array if array.size else np.load(path)


def _arrow_values(array: np.ndarray) -> pa.Array:
    """The flat values of `array` as an Arrow array over the same memory (no copy)."""
    flat = array.reshape(-1)
    return pa.Array.from_buffers(pa.from_numpy_dtype(flat.dtype), len(flat), [None, pa.py_buffer(flat)])


def load_prepared(folder: str | os.PathLike[str]) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
    """The training blocks and validation documents of a prepared folder, memory-mapped, and its manifest.

    The blocks have columns `input_ids` and `labels` (one array, shared) and `group` (a `ClassLabel` of the group
    names); the validation documents `input_ids` and `group`. Their fingerprints come from the folder's key, so
    the same corpus has the same fingerprint in every process and every stage (`drawn_blocks.npz` checks it).
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is not a prepared corpus (no {MANIFEST_NAME}); prepare it with `hf-cpt prepare` or "
            "load_corpus, or finish a killed preparation by running it again."
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != PREPARED_FORMAT:
        raise ValueError(
            f"The prepared corpus in {str(folder)!r} has format {manifest.get('format')}, this hf-cpt reads "
            f"{PREPARED_FORMAT}; prepare it again with `hf-cpt prepare`."
        )
    names, max_length = manifest["group_names"], manifest["max_length"]
    group = ClassLabel(names=names)
    ids = Value(manifest["dtype"])
    blocks = _mapped(folder / "train.npy")
    # Variable-length list arrays over the mapped tokens (only the offsets are new memory, 4 or 8 bytes a
    # block): tools that expect lists of lists, such as TRL's packing, refuse Arrow's fixed-size lists.
    num_tokens = blocks.size
    large = num_tokens > np.iinfo(np.int32).max
    offsets = pa.array(np.arange(0, num_tokens + 1, max_length, dtype=np.int64 if large else np.int32))
    list_array, list_feature = (pa.LargeListArray, LargeList) if large else (pa.ListArray, List)
    input_ids = list_array.from_arrays(offsets, _arrow_values(blocks))
    train_groups = np.repeat(
        [names.index(name) for name in manifest["train_blocks"]], list(manifest["train_blocks"].values())
    )
    train = Dataset(
        InMemoryTable(pa.table({"input_ids": input_ids, "labels": input_ids, GROUP_COLUMN: train_groups})),
        info=DatasetInfo(features=Features({"input_ids": list_feature(ids), "labels": list_feature(ids),
                                            GROUP_COLUMN: group})),
        fingerprint=f"{manifest['key']}-train",
    )  # fmt: skip
    validation = None
    if manifest["validation_documents"] is not None and sum(manifest["validation_documents"].values()):
        documents = manifest["validation_documents"]
        offsets = np.load(folder / "validation_offsets.npy").astype(np.int32)
        values = _arrow_values(_mapped(folder / "validation.npy"))
        validation_groups = np.repeat([names.index(name) for name in documents], list(documents.values()))
        validation = Dataset(
            InMemoryTable(pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), values),
                                    GROUP_COLUMN: validation_groups.astype(np.int64)})),
            info=DatasetInfo(features=Features({"input_ids": List(ids), GROUP_COLUMN: group})),
            fingerprint=f"{manifest['key']}-validation",
        )  # fmt: skip
    return train, validation, manifest

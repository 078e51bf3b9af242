"""Long passes over many items, split across ranks, that a killed run resumes where it stopped.

Two kinds of work share this loop: find what is not done yet, do this rank's share of it, save each result the
moment it is known, wait for the other ranks, and read everything back.

- `ShardedPass`: a model's pass over documents whose result is an array per document (perplexity scoring,
  classifier labeling). Documents are cut into shards of `shard_size`; under `torch.distributed`
  (`accelerate launch`, `torchrun`) rank r takes shards r, r + world, .... Each finished shard's array is
  written atomically, named by a key of fingerprints of the model, the data and the settings, so a restarted
  run skips it and an identical call reuses the work. `run` does the pass; every rank ends holding the whole
  result in document order.
- `run_pending`: items with a key whose outcome is a record (an LLM's answer), kept in a `RecordLog`. Items
  with a finished record are skipped, the rest are taken `[rank::world]`, each outcome is appended the moment
  it arrives, and every rank ends holding every record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from hf_cpt.utils.distributed import barrier, broadcast_object, rank_and_world
from hf_cpt.utils.environment import cache_dir
from hf_cpt.utils.io import atomic_path
from hf_cpt.utils.records import RecordLog, RecordWriter

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


def model_fingerprint(model: PreTrainedModel) -> str:
    """A hash of the config and of a sample of every parameter: it changes when the weights change."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.config.to_json_string().encode())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            digest.update(name.encode())
            flat = parameter.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)][:256]
            digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of the whole tokenization pipeline (vocabulary, normalizer, templates) of a fast tokenizer, else
    of its vocabulary and class: token ids, and whatever is computed from them, depend on all of it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    description = (
        backend.to_str()
        if backend is not None
        else type(tokenizer).__name__ + json.dumps(tokenizer.get_vocab(), sort_keys=True)
    )
    return hashlib.blake2b(description.encode(), digest_size=16).hexdigest()


def data_fingerprint(documents: Sequence, dataset: Dataset | None, text_column: str) -> str:
    """The dataset's own fingerprint when it has one (cheap), else a hash of every document."""
    digest = hashlib.blake2b(digest_size=16)
    if dataset is not None and getattr(dataset, "_fingerprint", None):
        digest.update(f"{dataset._fingerprint}:{text_column}:{len(dataset)}".encode())
    else:
        for document in documents:
            digest.update(document.encode() if isinstance(document, str) else np.asarray(document).tobytes())
            digest.update(b"\0")
    return digest.hexdigest()


def documents_of(data: Dataset | Sequence, text_column: str) -> tuple[Sequence, bool]:
    """The documents, and whether they are token ids already (a column of int lists, e.g. packed blocks)."""
    from datasets import Dataset

    if isinstance(data, Dataset):
        if text_column not in data.column_names:
            raise ValueError(
                f"text_column {text_column!r} is not a column of the data (columns: {data.column_names}); "
                "name the column that holds the documents."
            )
        return data[text_column], hasattr(data.features[text_column], "feature")
    return data, len(data) > 0 and not isinstance(data[0], str)


class ShardedPass:
    """The shards of one pass over `num_documents` documents: which this rank still has to do, and the result.

    Args:
        num_documents: documents in the pass.
        shard_size: documents per shard, the unit of work per rank and of resumption.
        fingerprints: JSON-able values that fix the result (model, data, settings); they name the shards.
        output_dir: where finished shards are kept; default: `<hf-cpt cache>/<cache_name>/<key>`.
        cache_name: the cache sub-folder of this kind of pass.
        what: names the pass in log lines.
    """

    def __init__(
        self,
        num_documents: int,
        shard_size: int,
        fingerprints: Sequence[Any],
        output_dir: str | os.PathLike[str] | None,
        cache_name: str,
        what: str,
    ) -> None:
        key = hashlib.blake2b(json.dumps(list(fingerprints)).encode(), digest_size=12).hexdigest()
        self.rank, self.world = rank_and_world()
        # One name for the shards of every rank (a dataset's fingerprint can differ by process).
        self.key = broadcast_object(key)
        self.folder = Path(output_dir) if output_dir is not None else cache_dir() / cache_name / self.key
        self.starts = range(0, num_documents, shard_size)
        self.shard_size = shard_size
        self.num_documents = num_documents
        mine = [start for number, start in enumerate(self.starts) if number % self.world == self.rank]
        self.todo = [start for start in mine if not self.path(start).is_file()]
        if len(self.todo) < len(mine):
            logger.info(
                "%s: %d of %d shards already done in %s.", what, len(mine) - len(self.todo), len(mine), self.folder
            )

    def path(self, start: int) -> Path:
        return self.folder / f"shard-{self.key}-{start:012d}.npy"

    def documents_todo(self) -> int:
        return sum(min(self.shard_size, self.num_documents - start) for start in self.todo)

    def write(self, start: int, result: np.ndarray) -> None:
        """Write atomically: a killed run leaves either the whole shard or nothing."""
        with atomic_path(self.path(start)) as temporary:
            np.save(temporary, result)

    def gather(self) -> list[np.ndarray]:
        """Every shard's result in document order, once all ranks are done (a collective call)."""
        barrier()
        return [np.load(self.path(start)) for start in self.starts]

    def run(self, compute_shard: Callable[[int, int], np.ndarray]) -> list[np.ndarray]:
        """Compute and write every shard this rank still has to do, then gather all of them (a collective call).

        Args:
            compute_shard: the result of the documents [start, stop), one row per document.

        Returns:
            Every shard's result in document order, the same on every rank.
        """
        for start in self.todo:
            self.write(start, compute_shard(start, min(start + self.shard_size, self.num_documents)))
        return self.gather()


class Keyed(Protocol):
    """A work item named by `key`: a hash of everything that determines its outcome."""

    key: str


ItemT = TypeVar("ItemT", bound=Keyed)


def run_pending(
    log: RecordLog,
    items: Sequence[ItemT],
    process: Callable[[list[ItemT], RecordWriter], None],
    *,
    what: str,
) -> dict[str, dict[str, Any]]:
    """Do this rank's share of the `items` that have no finished record in `log`, and return every record by key.

    A record is finished unless its `status` is `failed` (`RecordLog.finished_keys`): a failed item is done again
    by the next run. The unfinished items are split `[rank::world]`, and `process(mine, writer)` writes one record
    per item through `writer` as each finishes. A collective call under `torch.distributed`: every rank waits for
    the others, then reads all records.

    Args:
        log: the records of this job, from every rank and every earlier run.
        items: every item of the job, in order.
        process: does the given items, writing their records.
        what: names the job in log lines.
    """
    done = log.finished_keys()
    rank, world = rank_and_world()
    pending = [item for item in items if item.key not in done]
    if len(pending) < len(items):
        logger.info("%s: %d of %d items already finished in %s.", what, len(items) - len(pending), len(items),
                    log.folder)  # fmt: skip
    mine = pending[rank::world]
    if mine:
        with log.writer(rank) as writer:
            process(mine, writer)
    barrier()
    return log.read()

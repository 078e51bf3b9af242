"""Corpus-scale passes of a model over documents (perplexity scoring, topic labelling), split across ranks and
resumable.

Documents are cut into shards of `shard_size`; under `torch.distributed` (`accelerate launch`, `torchrun`)
rank r takes shards r, r + world, .... Each finished shard's result array is written to disk atomically,
named by a key of fingerprints of the model, the data and the settings, so a killed run restarts where it
stopped and an identical call reuses the work. At the end every rank reads back all shards and holds the
whole result in the original order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from datasets import Dataset
from transformers import PreTrainedModel

from hf_cpt.modeling import cache_dir
from hf_cpt.perplexity import rank_and_world

logger = logging.getLogger(__name__)


def model_fingerprint(model: PreTrainedModel) -> str:
    """A hash of the config and of a sample of every parameter: it changes when the weights change."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.config.to_json_string().encode())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            digest.update(name.encode())
            flat = parameter.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 256)][:256]
            digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()


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
        if self.world > 1:  # one name for the shards of every rank (a dataset's fingerprint can differ by process)
            shared = [key]
            dist.broadcast_object_list(shared, src=0)
            key = shared[0]
        self.key = key
        self.folder = Path(output_dir) if output_dir is not None else cache_dir() / cache_name / key
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
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(start)
        temporary = path.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(temporary, result)
        os.replace(temporary, path)

    def gather(self) -> list[np.ndarray]:
        """Every shard's result in document order, once all ranks are done (a collective call)."""
        if self.world > 1:
            dist.barrier()
        return [np.load(self.path(start)) for start in self.starts]

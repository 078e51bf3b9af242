"""Validation documents held out of a source that has no validation split (the released corpus has none).

The topic mixture (§3.2.1) measures the perplexity of every topic on documents the model does not train on, and
the run report compares sources before and after each stage. `survivi/Llama-3-SynE-Dataset` ships a train split
only, so `prepare_corpus` takes a sample of each such source's documents, per topic for a source packed per topic,
out of training and uses it as the validation split.

The sample is a pure function of the seed, the group's name and the number of its documents (in the order the
source's files give them): every rank, every stage and every resumed run hold out the same documents, and the
prepared folder's key names the seed and the count, so another choice never reads a folder made for this one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from hf_cpt.data.packing import group_name

DEFAULT_VALIDATION_DOCUMENTS = 1000
"""Documents held out per source (per topic of a topic source) by the recipe: enough for a per-topic perplexity
whose noise is well under the changes the topic mixture reacts to, and a negligible share of a 100B-token run."""
MAX_HELD_OUT_SHARE = 0.5
"""At most this share of a group's documents is held out, so that a small group still trains."""


def held_out_rows(
    source: str, topics: Sequence[Any] | pa.Array | pa.ChunkedArray | None, num_documents: int, count: int, seed: int
) -> dict[str, np.ndarray]:
    """Per group of the source (its topics, or the source itself), the sorted rows held out for validation.

    Each group holds out `count` documents, or `MAX_HELD_OUT_SHARE` of them when it has fewer than twice that,
    drawn without replacement by a generator seeded by `seed` and the group's name: the draw of one group does
    not depend on the others, nor on anything but the seed and the group's rows.
    """
    if topics is None:
        groups = {group_name(source): np.arange(num_documents)}
    else:
        # Dictionary-encoded in Arrow: no Python string per document, which a web source has tens of millions of.
        column = topics if isinstance(topics, (pa.Array, pa.ChunkedArray)) else pa.array(topics, pa.string())
        encoded = pc.fill_null(column.slice(0, num_documents), "").dictionary_encode()
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        names = encoded.dictionary.to_pylist()
        groups = {group_name(source, names[code]): np.flatnonzero(codes == code) for code in np.unique(codes)}
    held = {}
    for name, rows in groups.items():
        size = min(count, int(len(rows) * MAX_HELD_OUT_SHARE))
        entropy = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
        rng = np.random.default_rng([seed, entropy])
        held[name] = np.sort(rows[rng.choice(len(rows), size=size, replace=False)])
    return held


def hold_out_validation(
    dataset: Dataset, source: str, topic_column: str | None, count: int, seed: int, num_documents: int | None = None
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """Split a source's training documents into training and held-out validation documents (see `held_out_rows`).

    Args:
        dataset: the source's training documents.
        topic_column: the column whose topics the sample is stratified by; None: the source as one group.
        count: documents held out per group.
        seed: seeds the draw.
        num_documents: only the first `num_documents` rows are candidates (the source's own documents, not the
            ones a run added after them, such as its synthetic QA pairs); default: every row.

    Returns:
        the training documents (every row not held out, in order), the held-out ones, and the record the prepared
        folder's manifest keeps: the seed, the count asked for, and per group how many and which rows (indices in
        the source's training split as loaded) were held out.
    """
    num_documents = len(dataset) if num_documents is None else num_documents
    topics = (
        dataset.select_columns([topic_column]).with_format("arrow")[:num_documents][topic_column]
        if topic_column
        else None
    )
    held = held_out_rows(source, topics, num_documents, count, seed)
    rows = np.sort(np.concatenate(list(held.values()))) if held else np.zeros(0, dtype=np.int64)
    keep = np.ones(len(dataset), dtype=bool)
    keep[rows] = False
    record = {
        "seed": seed,
        "requested": count,
        "documents": {name: len(group) for name, group in held.items()},
        "rows": {name: group.tolist() for name, group in held.items()},
    }
    return dataset.select(np.flatnonzero(keep)), dataset.select(rows), record

"""Sources rewritten for one run: read from another dataset, mapped to text, filtered, partly corrupted.

The ablations of §4.2 change what one source holds and nothing else: WebInstruct or Cosmopedia in place of the
synthetic QA (Fig. 5), a share of the synthetic documents corrupted (Fig. 2), only two disciplines kept for the
discipline curricula (Fig. 4). `derive_sources` writes each such source, as the run asks for it, into
`<output_dir>/derived_sources/data/<source>/{train,validation}.parquet`, a corpus laid out like the Hub dataset,
and the run reads that source from there (`load_corpus(source_paths=...)`), through the same loader as any other.

The steps, in order: read the split (`SourceOptions.path` and `data_dir`, default the run's corpus), join
`text_columns` into the text column, keep the rows `keep` names, then (training split only) corrupt
`corruption.fraction` of them with `synth.corrupt_dataset`. The validation split, when the source has one, is
read, mapped and filtered the same way but never corrupted: it measures the model on clean documents.

Each source's folder holds `derived.json`: its options, the fingerprints of the documents read and, for a
corruption, the documents corrupted and the edits by transform. A re-run with the same options over the same
documents finds it and writes nothing, so the prepared corpus built on it is found too.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, concatenate_datasets

from hf_cpt.data.sources import load_source, source_dir
from hf_cpt.utils.io import save_split, write_text_atomically

if TYPE_CHECKING:
    from hf_cpt.run_config import SourceOptions

logger = logging.getLogger(__name__)

DERIVED_DIR = "derived_sources"
RECORD_NAME = "derived.json"
TEXT_SEPARATOR = "\n\n"
"""What joins the `text_columns` of a row (a question and its answer read as two paragraphs)."""


def _read_split(
    source: str, options: SourceOptions, dataset_path: str, split: str, text_column: str, num_proc: int | None
) -> Dataset | None:
    """One split of the source as `options` place it, concatenated over its `data_dir` folders; None when absent."""
    path = options.path or dataset_path
    folders = options.data_dir if isinstance(options.data_dir, list) else [options.data_dir]
    check_column = options.text_columns[0] if options.text_columns else text_column
    parts = [
        load_source(path, source, split, check_column, required=split == "train", num_proc=num_proc, data_dir=folder)
        for folder in folders
    ]
    parts = [part for part in parts if part is not None]
    return concatenate_datasets(parts) if parts else None


def _as_text(dataset: Dataset, source: str, columns: Sequence[str], text_column: str) -> Dataset:
    """The rows with `columns` joined into `text_column` (the other columns kept)."""
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"source_options.{source}.text_columns names {missing}, which the source lacks (columns: "
            f"{dataset.column_names}); name columns it has."
        )

    def join(batch: dict[str, list]) -> dict[str, list[str]]:
        rows = zip(*(batch[column] for column in columns), strict=True)
        return {text_column: [TEXT_SEPARATOR.join(str(part) for part in row if part) for row in rows]}

    return dataset.map(join, batched=True, desc=f"Text of {source}")


def _kept(dataset: Dataset, source: str, keep: Mapping[str, Sequence[Any]]) -> Dataset:
    """The rows whose every `keep` column holds one of its listed values."""
    for column, values in keep.items():
        if column not in dataset.column_names:
            raise ValueError(
                f"source_options.{source}.keep names column {column!r}, which the source lacks (columns: "
                f"{dataset.column_names}); name a column it has."
            )
        allowed = set(values)
        dataset = dataset.filter(lambda batch, c=column, a=allowed: [v in a for v in batch[c]], batched=True,
                                 desc=f"Keep {source}")  # fmt: skip
        if not len(dataset):
            raise ValueError(
                f"source_options.{source}.keep.{column} keeps no document (values {sorted(map(str, allowed))}); "
                "name values the column holds."
            )
    return dataset


def derive_sources(
    options: Mapping[str, SourceOptions] | None,
    dataset_path: str,
    output_dir: str | Path,
    text_column: str = "text",
    num_proc: int | None = None,
) -> dict[str, str]:
    """Write every source whose options rewrite its documents into `output_dir/derived_sources` (see the module
    docstring) and return source -> the corpus folder to read it from (`load_corpus(source_paths=...)`).

    Sources whose options only set `pack_by` are read where they are and are not in the result.
    """
    root = Path(output_dir) / DERIVED_DIR
    paths = {}
    for source, option in (options or {}).items():
        if not option.rewrites_documents:
            continue
        paths[source] = str(root)
        folder = root / source_dir(source)
        splits = {split: _read_split(source, option, dataset_path, split, text_column, num_proc)
                  for split in ("train", "validation")}  # fmt: skip
        splits = {split: data for split, data in splits.items() if data is not None}
        record: dict[str, Any] = {
            "source": source,
            "read_from": option.path or dataset_path,
            "options": option.settings(),
            "text_column": text_column,
            "documents": {split: [data._fingerprint, len(data)] for split, data in splits.items()},
        }
        record_path = folder / RECORD_NAME
        if record_path.is_file():
            done = json.loads(record_path.read_text(encoding="utf-8"))
            if {key: done.get(key) for key in record} == record:
                logger.info("Source %s: derived copy in %s is up to date.", source, folder)
                continue
        for name in list(folder.glob("*.parquet")) if folder.is_dir() else []:
            name.unlink()  # a split the new options no longer have must not linger
        for split, data in splits.items():
            if option.text_columns:
                data = _as_text(data, source, option.text_columns, text_column)
            if option.keep:
                data = _kept(data, source, option.keep)
            if split == "train" and option.corruption is not None:
                data, record["corruption"] = _corrupted(data, option, text_column, num_proc)
            save_split(data, root, split, source_dir(source))
            record.setdefault("written", {})[split] = len(data)
        write_text_atomically(record_path, json.dumps(record, indent=2, ensure_ascii=False))
        logger.info("Source %s: derived copy written to %s (%s).", source, folder, record["written"])
    return paths


def _corrupted(
    data: Dataset, option: SourceOptions, text_column: str, num_proc: int | None
) -> tuple[Dataset, dict[str, Any]]:
    """`corrupt_dataset` over the training documents, without its bookkeeping columns, and what it did."""
    from hf_cpt.synth.corrupt import corrupt_dataset

    corruption = option.corruption
    corrupted = corrupt_dataset(
        data, corruption.fraction, corruption.seed, text_column, corruption.transforms, num_proc=num_proc
    )
    edits = Counter(edit["transform"] for row in corrupted["corruption_edits"] for edit in row)
    summary = {
        "corrupted": int(sum(corrupted["corrupted"])),
        "of": len(corrupted),
        "edits": dict(sorted(edits.items())),
    }
    return corrupted.remove_columns(["corrupted", "corruption_edits"]), summary

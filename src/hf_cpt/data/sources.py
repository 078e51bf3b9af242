"""Loading named sources of a corpus laid out like `survivi/Llama-3-SynE-Dataset`.

A corpus is a Hub dataset id or a local folder with one sub-folder per source,
`data/<source>/<split>*.{parquet,jsonl,json}`. Both go through the same call,
`datasets.load_dataset(path, data_dir="data/<source>")`, so what the tests prove on local folders
holds for the Hub.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from datasets import Dataset, load_dataset
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import HFValidationError


def source_dir(source: str) -> str:
    """The folder of a source inside the corpus, as in the released Llama-3-SynE dataset."""
    return f"data/{source}"


def _is_local(path: str) -> bool:
    return Path(path).expanduser().exists()


def load_source(
    path: str,
    source: str,
    split: str = "train",
    text_column: str = "text",
    required: bool = True,
    num_proc: int | None = None,
    data_dir: str | None = None,
) -> Dataset | None:
    """Load one split of one source, checking the text column.

    Args:
        path: Hub dataset id (`survivi/Llama-3-SynE-Dataset`) or a local folder with the same layout.
        source: sub-folder name under `data/`, e.g. `web-en`.
        split: `train`, `validation`, ...: files are matched to splits by name, as `datasets` does.
        text_column: column holding the document text.
        required: when False, a source without this split returns None instead of raising.
        data_dir: the folder inside `path` holding the source's files (another dataset's layout, e.g. `data` of
            `TIGER-Lab/WebInstructSub`); default `data/<source>`.

    Raises:
        FileNotFoundError: the corpus or the source does not exist (one sentence naming the fix).
        ValueError: the text column is missing or holds no strings, a required split is absent, or a local text
            file is not valid UTF-8 (named with its path and line).
    """
    data_dir = source_dir(source) if data_dir is None else data_dir
    if _is_local(path):
        if not (Path(path).expanduser() / data_dir).is_dir():
            raise FileNotFoundError(
                f"Source {source!r} is not in dataset_path {path!r} (no folder {data_dir}/); "
                "remove it from the mixture or add its files."
            )
        check_utf8(Path(path).expanduser() / data_dir)
    elif Path(path).is_absolute() or path.startswith((".", "~")) or path.count("/") > 1:
        raise FileNotFoundError(
            f"dataset_path {path!r} does not exist; set dataset_path to a local corpus folder or a Hub dataset id."
        )
    try:
        dataset = load_dataset(path, data_dir=data_dir, split=split, num_proc=num_proc)
    except (DatasetNotFoundError, HFValidationError, ConnectionError) as error:
        raise FileNotFoundError(
            f"dataset_path {path!r} is neither a local folder nor a reachable Hub dataset id ({error}); "
            "set dataset_path to a local corpus folder or a Hub dataset id."
        ) from error
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"Source {source!r} is not in dataset_path {path!r} ({error}); remove it from the mixture or add its files."
        ) from error
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        if not required:
            return None
        raise ValueError(
            f"Source {source!r} in {path!r} has no {split!r} split; add files named {split}*.parquet or "
            f"{split}*.jsonl under {data_dir}/."
        ) from error
    if text_column not in dataset.column_names:
        raise ValueError(
            f"text_column {text_column!r} is not a column of source {source!r} (columns: {dataset.column_names}); "
            "set text_column to the column that holds the text."
        )
    check_text_column(dataset, text_column, f"source {source!r}")
    return dataset


def check_text_column(dataset: Dataset, text_column: str, where: str) -> None:
    """Refuse a text column that does not hold strings (a parquet column of ints), naming the type found."""
    feature = dataset.features[text_column]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        found = getattr(feature, "dtype", None) or type(feature).__name__
        raise ValueError(
            f"text_column {text_column!r} of {where} holds {found} values, not text; convert that column to strings "
            "or set text_column to the column that holds the documents."
        )


# Files `datasets` reads as text: it replaces bytes that are not UTF-8 without a word, so they are checked first.
_TEXT_SUFFIXES = (".jsonl", ".json", ".txt", ".csv")
_CHUNK = 1 << 24


def check_utf8(location: str | Path) -> None:
    """Refuse a text file (`location`, or one under that folder) that is not valid UTF-8, naming its path and line.

    Reads each file once in large chunks (an incremental decoder, so a character split between chunks is fine).
    """
    location = Path(location)
    for path in sorted(location.rglob("*")) if location.is_dir() else [location]:
        if path.suffix.lower() not in _TEXT_SUFFIXES or not path.is_file():
            continue
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = lines = 0
        with open(path, "rb") as file:
            while True:
                chunk = file.read(_CHUNK)
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as error:
                    start = max(0, error.start)
                    line = lines + chunk[:start].count(b"\n") + 1
                    raise ValueError(
                        f"{path} is not valid UTF-8 (line {line}, byte {offset + start}); re-encode it as UTF-8 "
                        "(e.g. `iconv -f latin1 -t utf-8`) or remove it from the data."
                    ) from None
                if not chunk:
                    break
                offset += len(chunk)
                lines += chunk.count(b"\n")

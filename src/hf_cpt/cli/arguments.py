"""What several commands share: reading DATA, its split and text column, and choosing a generation backend."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset

    from hf_cpt.generation import GenerationBackend

_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_data(path: str, split: str = "train", source: str | None = None, text_column: str = "text") -> Dataset:
    """A `datasets.Dataset` from a local file, a local dataset folder, a Hub id, or a corpus source."""
    from datasets import load_dataset

    from hf_cpt.data.sources import check_utf8, load_source

    if source:
        return load_source(path, source, split, text_column)
    suffix = Path(path).suffix.lower()
    if Path(path).exists():
        check_utf8(path)  # `datasets` would replace bytes that are not UTF-8 without a word
    if Path(path).is_file():
        if suffix not in _FILE_FORMATS:
            raise ValueError(f"{path} is a {suffix or 'suffix-less'} file; give a .jsonl, .json, .parquet or .csv.")
        return load_dataset(_FILE_FORMATS[suffix], data_files=path, split=split)
    return load_dataset(path, split=split)


def add_data_arguments(parser: argparse.ArgumentParser, source: bool = True) -> None:
    """Which documents DATA holds: its split, its text column, and (for a corpus) the source folder."""
    if source:
        parser.add_argument("--source", help="Source folder of a corpus laid out as data/<source>/ (e.g. web-en).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--text-column", default="text")


def add_sharding_arguments(parser: argparse.ArgumentParser) -> None:
    """How a model's pass over a corpus is cut and run: shard size (the unit of resumption) and bf16."""
    parser.add_argument("--shard-size", type=int, default=4096, help="Documents per shard (unit of resumption).")
    parser.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast; default: if supported."
    )


def add_backend_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """Which LLM answers, and how it is asked (`synth`, `annotate`)."""
    from hf_cpt.generation.base import BACKENDS

    parser.add_argument("--backend", choices=list(BACKENDS), default="transformers")
    parser.add_argument("--model", help="Model (Hub id or folder; the served name for openai); default: embedded.")
    parser.add_argument("--base-url", default="http://localhost:8000/v1", help="OpenAI-compatible server URL.")
    parser.add_argument("--max-concurrency", type=int, default=8, help="Requests in flight (openai).")
    parser.add_argument("--timeout", type=float, default=120.0, help="Seconds per request (openai).")
    parser.add_argument("--max-tries", type=int, default=5, help="Tries per request before it is recorded failed.")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="Prompts per batch (transformers).")


def backend_from_arguments(args: argparse.Namespace) -> GenerationBackend:
    """The generation backend named by `add_backend_arguments`' options."""
    from hf_cpt.generation import load_backend

    options: dict = {}
    if args.backend == "openai":
        options = {
            "base_url": args.base_url,
            "max_concurrency": args.max_concurrency,
            "timeout": args.timeout,
            "max_tries": args.max_tries,
        }
    elif args.backend == "transformers":
        options = {"batch_size": args.batch_size}
    return load_backend(args.backend, args.model, **options)

"""`hf-cpt label`: label a corpus with a topic classifier (sharded across processes, resumable)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_cpt.cli.arguments import add_data_arguments, add_sharding_arguments, load_data

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("label", help="Label a corpus with a topic classifier (sharded, resumable).")
    parser.add_argument("data", help="Documents to label (file, folder, Hub id, or a corpus with --source).")
    parser.add_argument("--classifier", required=True, help="Classifier folder or Hub id (from train-classifier).")
    parser.add_argument("--output", required=True, help="Folder for data/ and the finished shards.")
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    add_sharding_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    """`topic` and `topic_probs` for every document, sharded across processes and resumable."""
    from accelerate import PartialState

    from hf_cpt.topics import label_topics
    from hf_cpt.utils.io import save_split

    state = PartialState()
    data = load_data(args.data, args.split, args.source, args.text_column)
    labeled = label_topics(
        data, args.classifier, text_column=args.text_column, batch_size=args.batch_size, max_length=args.max_length,
        bf16=args.bf16, shard_size=args.shard_size, output_dir=Path(args.output) / "shards",
    )  # fmt: skip
    if state.is_main_process:
        path = save_split(labeled, Path(args.output), args.split)
        logger.info("Labeled %d documents into %s.", len(labeled), path)
    state.wait_for_everyone()

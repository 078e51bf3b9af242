"""`hf-cpt corrupt`: the §4.2 corruption of a fraction of samples (numbers, nouns, adjectives)."""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

from hf_cpt.cli.arguments import add_data_arguments, load_data

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("corrupt", help="Corrupt a fraction of samples (§4.2): numbers, nouns, adjectives.")
    parser.add_argument("data", help="Dataset to corrupt (file, folder or Hub id).")
    parser.add_argument("--output", required=True, help="Folder for data/ and corruption_report.json.")
    parser.add_argument("--fraction", type=float, required=True, help="Share of samples to corrupt, 0 to 1.")
    parser.add_argument("--seed", type=int, default=0)
    add_data_arguments(parser, source=False)
    parser.add_argument("--transforms", nargs="+", default=["numbers", "nouns", "adjectives"])
    parser.add_argument("--num-proc", type=int)
    return parser


def run(args: argparse.Namespace) -> None:
    """The §4.2 corruption of a fraction of samples into `--output`: data/ and corruption_report.json."""
    from hf_cpt.synth import corrupt_dataset
    from hf_cpt.utils.io import save_split

    data = load_data(args.data, args.split)
    corrupted = corrupt_dataset(
        data, args.fraction, args.seed, text_column=args.text_column, transforms=args.transforms, num_proc=args.num_proc
    )
    output = Path(args.output)
    save_split(corrupted, output, "train")
    edits = Counter(edit["transform"] for edits in corrupted["corruption_edits"] for edit in edits)
    report = {
        "data": args.data,
        "fraction": args.fraction,
        "seed": args.seed,
        "samples": len(corrupted),
        "corrupted": int(sum(corrupted["corrupted"])),
        "edits": dict(edits),
    }
    (output / "corruption_report.json").write_text(json.dumps(report, indent=2))
    logger.info("Corrupted %d of %d samples into %s.", report["corrupted"], len(corrupted), output)

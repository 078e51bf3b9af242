"""`hf-cpt compare`: several runs side by side, one table and one plot (as the paper's Figs. 1-5)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare", help="Compare runs: benchmark scores and per-source validation perplexity, a table and a plot."
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="The output_dir of each recipe run.")
    parser.add_argument("--output", required=True, help="Folder for comparison.md and comparison.png.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Read each run's evaluation_after.json and validation_perplexity.json; write the table and the plot."""
    from hf_cpt.comparison import compare_runs

    paths = compare_runs(args.runs, args.output)
    logger.info("Compared %d runs: %s and %s.", len(args.runs), paths["table"], paths["plot"])

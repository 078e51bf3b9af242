"""The `hf-cpt` parser, built from every command module, and the entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hf_cpt.cli.commands import (
    annotate,
    compare,
    corrupt,
    evaluate,
    label,
    prepare,
    push,
    score_ppl,
    synth,
    train_classifier,
)
from hf_cpt.utils.errors import DEBUG_ENV, DEBUG_FLAG, run_main

COMMANDS = (prepare, score_ppl, synth, corrupt, annotate, train_classifier, label, evaluate, compare, push)
"""The command modules, in the order `hf-cpt --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-cpt",
        description="Continual pre-training with the Llama-3-SynE method.",
        epilog=f"Errors are one sentence; {DEBUG_FLAG} (anywhere) or {DEBUG_ENV}=1 adds the traceback.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers).set_defaults(run=command.run)
    return parser


def _run(argv: Sequence[str]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("hf_cpt").setLevel(logging.INFO)  # other libraries' INFO lines are noise here
    args = build_parser().parse_args(argv)
    args.run(args)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one sub-command; an error of the package ends it with its one sentence and exit status 1."""
    status = run_main(_run, argv)
    if status:
        sys.exit(status)

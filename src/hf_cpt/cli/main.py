"""The `hf-cpt` parser, built from every command module, and the entry point."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from hf_cpt.cli.commands import annotate, corrupt, evaluate, label, prepare, push, score_ppl, synth, train_classifier

COMMANDS = (prepare, score_ppl, synth, corrupt, annotate, train_classifier, label, evaluate, push)
"""The command modules, in the order `hf-cpt --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-cpt", description="Continual pre-training with the Llama-3-SynE method.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers).set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.run(args)

"""`hf-cpt annotate`: topic labels from an LLM with the Appendix B prompt (§3.2.1), the classifier's training data."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hf_cpt.cli.arguments import add_backend_arguments, add_data_arguments, backend_from_arguments, load_data

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("annotate", help="Topic labels from an LLM (the classifier's training data).")
    parser.add_argument("data", help="Documents to label (file, folder, Hub id, or a corpus with --source).")
    parser.add_argument("--output", required=True, help="Folder for records, data/ and annotation_report.json.")
    parser.add_argument("--taxonomy", default="en", help="en, cn, or a YAML file with name, language and topics.")
    add_data_arguments(parser)
    parser.add_argument("--limit", type=int, help="Label only the first N documents (the paper labels a sample).")
    parser.add_argument("--max-chars", type=int, default=2000, help="Characters of each document shown to the LLM.")
    parser.add_argument("--seed", type=int, default=0, help="Shuffles the topic list of each request.")
    parser.add_argument("--drop-failed", action="store_true", help="Leave out documents whose request failed.")
    add_backend_arguments(parser, batch_size=16)
    return parser


def run(args: argparse.Namespace) -> None:
    """Topic labels for DATA into `--output`: records/, data/ and annotation_report.json."""
    from hf_cpt.topics import annotate_topics
    from hf_cpt.utils.io import save_split

    data = load_data(args.data, args.split, args.source, args.text_column)
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    annotated = annotate_topics(
        data, backend_from_arguments(args), args.taxonomy, args.output, text_column=args.text_column,
        max_chars=args.max_chars, seed=args.seed,
    )  # fmt: skip
    if args.drop_failed:
        annotated = annotated.filter(lambda row: row["topic_match"] != "failed")
    path = save_split(annotated, Path(args.output))
    logger.info("Annotated %d documents into %s.", len(annotated), path)

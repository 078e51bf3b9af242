"""`hf-cpt train-classifier`: a topic classifier trained on labeled documents (§3.2.1)."""

from __future__ import annotations

import argparse
import logging

from hf_cpt.cli.arguments import add_data_arguments, load_data

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train-classifier", help="Train a topic classifier on labelled documents.")
    parser.add_argument("data", help="Labelled documents (file, folder, Hub id, or a corpus with --source).")
    parser.add_argument("--output", required=True, help="Folder for the classifier, metrics.json and its card.")
    parser.add_argument("--taxonomy", default="en", help="en, cn, or a YAML file with name, language and topics.")
    parser.add_argument("--model", help="Encoder to fine-tune (e.g. huawei-noah/TinyBERT_General_4L_312D); default: "
                        "the embedded all-MiniLM-L6-v2; char-ngrams: the hashed n-gram classifier; lm-probe: a "
                        "linear probe on the frozen embedded SmolLM2.")  # fmt: skip
    add_data_arguments(parser)
    parser.add_argument("--label-column", default="topic")
    parser.add_argument("--test-size", type=float, default=0.2, help="Share held out (stratified) for the metrics.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, help="An encoder's epochs (default 10); none for a fitted model.")
    parser.add_argument("--learning-rate", type=float, help="An encoder's learning rate (default 1e-4).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    return parser


def run(args: argparse.Namespace) -> None:
    """A topic classifier trained on labelled documents, with held-out accuracy, macro-F1 and a model card."""
    from hf_cpt.topics import train_topic_classifier

    data = load_data(args.data, args.split, args.source, args.text_column)
    report = train_topic_classifier(
        data,
        args.taxonomy,
        args.model,
        args.output,
        text_column=args.text_column,
        label_column=args.label_column,
        test_size=args.test_size,
        seed=args.seed,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    logger.info(
        "Held-out accuracy %.3f, macro-F1 %.3f (majority baseline %.3f); classifier in %s.",
        report.accuracy, report.macro_f1, report.majority_baseline, args.output,
    )  # fmt: skip

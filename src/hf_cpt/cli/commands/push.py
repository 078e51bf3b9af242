"""`hf-cpt push`: a model folder (with its card) or a generated dataset folder (data/, README.md) to the Hub."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("push", help="Push a model folder or a generated dataset to the Hub.")
    parser.add_argument("folder", help="A saved model folder (with README.md) or a dataset folder (data/, README.md).")
    parser.add_argument("repo", help="Hub repo id, e.g. me/llama3-syne-cpt.")
    parser.add_argument("--type", choices=["model", "dataset"], default="model")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="Stage the upload folder and stop.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Upload FOLDER to REPO, or with `--dry-run` stage exactly what would be uploaded and say where."""
    from hf_cpt.hub import push_folder, push_model

    if args.type == "model":
        staged = push_model(args.folder, args.repo, private=args.private, dry_run=args.dry_run)
    else:
        staged = push_folder(
            args.folder, args.repo, repo_type="dataset", include=["data/*", "README.md"], private=args.private,
            dry_run=args.dry_run, commit_message="Upload dataset (hf-cpt)",
        )  # fmt: skip
    if args.dry_run:
        print(f"Dry run: {staged} holds exactly what would be uploaded to {args.repo}.")

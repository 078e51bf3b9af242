"""`hf-cpt synth`: synthetic scientific or code QA pairs from an LLM (§3.3, resumable)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from hf_cpt.cli.arguments import add_backend_arguments, add_data_arguments, backend_from_arguments, load_data

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("synth", help="Synthetic scientific or code QA pairs from an LLM (resumable).")
    parser.add_argument("snippets", nargs="?", help="Seed snippets with text and discipline columns (scientific_qa).")
    parser.add_argument("--output", required=True, help="Folder for records, data/, report.json and README.md.")
    parser.add_argument("--task", choices=["scientific_qa", "code_qa"], default="scientific_qa")
    parser.add_argument("--num-items", type=int, help="Code pairs to ask for; with snippets: use the first N.")
    parser.add_argument("--code-problems", help="LeetCode-style problems (title, content, python) for code_qa.")
    parser.add_argument("--num-examples", type=int, default=3, help="Demonstrations per code prompt.")
    add_backend_arguments(parser, batch_size=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples-per-seed", type=int, default=1)
    add_data_arguments(parser, source=False)
    parser.add_argument("--discipline-column", default="discipline")
    parser.add_argument("--id-column", help="Column naming each snippet; default: the row number.")
    parser.add_argument(
        "--benchmark", nargs="*", default=[], help="Benchmark questions to decontaminate against (.txt or data files)."
    )
    parser.add_argument(
        "--near-dedup-threshold", type=float, default=0.8, help="MinHash Jaccard above which pairs are near duplicates."
    )
    parser.add_argument("--push-to-hub", metavar="REPO", help="Push the dataset and its card to this Hub repo.")
    parser.add_argument("--private", action="store_true", help="Create the Hub repo private.")
    parser.add_argument("--dry-run", action="store_true", help="Stage the upload folder without pushing.")
    return parser


def benchmark_texts(paths: Sequence[str]) -> list[str]:
    """Benchmark questions to keep out of synthetic data: `.txt` (one per line) or data files with a
    `question` (else `text`) column."""
    texts: list[str] = []
    for path in paths:
        if path.endswith(".txt"):
            texts += [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
            continue
        data = load_data(path)
        column = next((name for name in ("question", "text") if name in data.column_names), None)
        if column is None:
            raise ValueError(f"{path} has neither a 'question' nor a 'text' column; give the benchmark's questions.")
        texts += [str(text) for text in data[column]]
    return texts


def run(args: argparse.Namespace) -> None:
    """Synthetic QA pairs (§3.3) into `--output`: records, data/, rejects.jsonl, report.json, README.md."""
    from hf_cpt.generation import SamplingParams
    from hf_cpt.synth import SynthesisFailed, SynthQAGenerator

    backend = backend_from_arguments(args)
    code_problems = load_data(args.code_problems) if args.code_problems else None
    generator = SynthQAGenerator(
        backend,
        args.output,
        task=args.task,
        sampling=SamplingParams(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
        ),
        samples_per_seed=args.samples_per_seed,
        text_column=args.text_column,
        discipline_column=args.discipline_column,
        id_column=args.id_column,
        code_problems=code_problems,
        num_examples=args.num_examples,
        seed=args.seed,
    )
    snippets = load_data(args.snippets, args.split) if args.snippets else None
    pairs = generator.generate(
        snippets,
        args.num_items,
        benchmark_texts=benchmark_texts(args.benchmark) or None,
        near_dedup_threshold=args.near_dedup_threshold,
    )
    report = generator.report
    if not len(pairs):  # exit non-zero, with the reasons; nothing was written to push
        raise SynthesisFailed(report, generator.output_dir)
    logger.info(
        "Synthetic QA: %d of %d items accepted, %d kept after filters, in %s.",
        report["accepted"], report["items"], len(pairs), args.output,
    )  # fmt: skip
    if args.push_to_hub:
        generator.push_to_hub(args.push_to_hub, private=args.private, dry_run=args.dry_run)

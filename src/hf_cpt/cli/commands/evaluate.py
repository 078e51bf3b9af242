"""`hf-cpt eval`: benchmarks through lm-eval with the paper's shot counts (§4.1)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="Benchmarks through lm-eval with the paper's shot counts.")
    parser.add_argument("model", help="Model folder or Hub id.")
    parser.add_argument(
        "--benchmarks", nargs="+", default=["bundled"], help="Benchmark names or suites (major, scientific, bundled)."
    )
    parser.add_argument("--output", help="Folder for evaluation.json and evaluation.md.")
    parser.add_argument("--baseline", help="evaluation.json of the base model: adds the forgetting report.")
    parser.add_argument("--limit", type=int, help="Questions per benchmark (default: all).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--allow-code-execution", action="store_true", help="Run model-written code (HumanEval, MBPP).")
    return parser


def run(args: argparse.Namespace) -> None:
    """The chosen benchmarks (lm-eval, the paper's shot counts) into `--output`: evaluation.json and .md."""
    from hf_cpt.evaluation import EvaluationResult, comparison_table, evaluate, forgetting_report

    result = evaluate(
        args.model,
        args.benchmarks,
        batch_size=args.batch_size,
        limit=args.limit,
        backend=args.backend,
        output_dir=args.output,
        allow_code_execution=args.allow_code_execution,
    )
    tables = ["# Evaluation", "", comparison_table(result)]
    if args.baseline:
        baseline = EvaluationResult.from_dict(json.loads(Path(args.baseline).read_text()))
        tables += ["", "## Against the baseline", "", forgetting_report(baseline, result)]
    text = "\n".join(tables)
    if args.output:
        (Path(args.output) / "evaluation.md").write_text(text, encoding="utf-8")
    print(text)

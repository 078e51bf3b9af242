"""`hf-cpt eval`: benchmarks through lm-eval with the paper's shot counts (§4.1)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_cpt.evaluation import EvaluationResult


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
    from hf_cpt.evaluation import comparison_table, evaluate, forgetting_report

    baseline = read_baseline(args.baseline) if args.baseline else None  # before the evaluation, which takes hours
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
    if baseline is not None:
        tables += ["", "## Against the baseline", "", forgetting_report(baseline, result)]
    text = "\n".join(tables)
    if args.output:
        (Path(args.output) / "evaluation.md").write_text(text, encoding="utf-8")
    print(text)


def read_baseline(path: str) -> EvaluationResult:
    """The `--baseline` file, or one sentence naming it and what it must be."""
    from hf_cpt.evaluation import EvaluationResult

    hint = "give the evaluation.json that `hf-cpt eval --output` (or the recipe's evaluation_before.json) wrote"
    try:
        return EvaluationResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ValueError(f"--baseline {path} does not exist; {hint}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--baseline {path} is not JSON ({error}); {hint}.") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"--baseline {path} is not an evaluation result (no {error} in it); {hint}.") from None

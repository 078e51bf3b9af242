"""`hf-cpt`: the command line, one sub-command per part of the method.

    hf-cpt score-ppl MODEL DATA --output DIR [--source web-cn] [--split train] [--text-column text]

Run under `accelerate launch` to split the work across processes; every sub-command is resumable.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def score_ppl(args: argparse.Namespace) -> None:
    """Per-document perplexity of a corpus: `perplexity.npy` (one float per document, in order) and
    `summary.json` (count, mean, quantiles and the ten difficulty-group boundaries) in `--output`."""
    import torch
    from accelerate import PartialState
    from datasets import load_dataset
    from transformers import AutoTokenizer

    from hf_cpt.curriculum import score_perplexity
    from hf_cpt.data.sources import load_source
    from hf_cpt.modeling import load_causal_lm

    state = PartialState(cpu=not torch.accelerator.is_available())
    if args.source:
        data = load_source(args.data, args.source, args.split, args.text_column)
    else:
        data = load_dataset(args.data, split=args.split)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = load_causal_lm(args.model).to(state.device)
    output = Path(args.output)
    scores = score_perplexity(
        model,
        tokenizer,
        data,
        text_column=args.text_column,
        max_length=args.max_length,
        stride=args.stride,
        batch_tokens=args.batch_tokens,
        bf16=args.bf16,
        shard_size=args.shard_size,
        output_dir=output / "shards",
    )
    if state.is_main_process:
        np.save(output / "perplexity.npy", scores)
        quantiles = np.quantile(scores, [0.0, 0.25, 0.5, 0.75, 1.0]).tolist()
        summary = {
            "documents": len(scores),
            "mean": float(scores.mean()),
            "quantiles": dict(zip(["min", "q25", "median", "q75", "max"], quantiles, strict=True)),
            "difficulty_group_bounds": np.quantile(scores, np.linspace(0, 1, 11)).tolist(),
            "model": args.model,
            "data": args.data,
            "source": args.source,
            "split": args.split,
        }
        (output / "summary.json").write_text(json.dumps(summary, indent=2))
        logging.getLogger("hf_cpt").info("Scored %d documents into %s.", len(scores), output / "perplexity.npy")
    state.wait_for_everyone()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-cpt", description="Continual pre-training with the Llama-3-SynE method.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score-ppl", help="Per-document perplexity of a corpus (sharded across processes, resumable)."
    )
    score.add_argument("model", help="Model name on the Hub or local folder.")
    score.add_argument("data", help="Dataset name on the Hub or local folder (or a corpus with --source).")
    score.add_argument("--output", required=True, help="Folder for perplexity.npy, summary.json and shards/.")
    score.add_argument("--source", help="Source folder of a corpus laid out as data/<source>/ (e.g. web-cn).")
    score.add_argument("--split", default="train")
    score.add_argument("--text-column", default="text")
    score.add_argument("--max-length", type=int, help="Tokens per window; default: the model's context.")
    score.add_argument("--stride", type=int, help="Window stride for long documents; default: max_length // 2.")
    score.add_argument("--batch-tokens", type=int, default=8192, help="Token budget of a batch.")
    score.add_argument("--shard-size", type=int, default=4096, help="Documents per shard (unit of resumption).")
    score.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast; default: if supported."
    )
    score.set_defaults(run=score_ppl)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

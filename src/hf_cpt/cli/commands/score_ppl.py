"""`hf-cpt score-ppl`: per-document perplexity of a corpus (sharded across processes, resumable)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hf_cpt.cli.arguments import add_data_arguments, add_sharding_arguments, load_data

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "score-ppl", help="Per-document perplexity of a corpus (sharded across processes, resumable)."
    )
    parser.add_argument("model", help="Model name on the Hub or local folder.")
    parser.add_argument("data", help="Dataset name on the Hub or local folder (or a corpus with --source).")
    parser.add_argument("--output", required=True, help="Folder for perplexity.npy, summary.json and shards/.")
    add_data_arguments(parser)
    parser.add_argument("--max-length", type=int, help="Tokens per window; default: the model's context.")
    parser.add_argument("--stride", type=int, help="Window stride for long documents; default: max_length // 2.")
    parser.add_argument("--batch-tokens", type=int, default=8192, help="Token budget of a batch.")
    add_sharding_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    """Per-document perplexity of a corpus: `perplexity.npy` (one float per document, in order) and
    `summary.json` (count, mean, quantiles and the ten difficulty-group boundaries) in `--output`."""
    import numpy as np
    import torch
    from accelerate import PartialState
    from transformers import AutoTokenizer

    from hf_cpt.curriculum import score_perplexity
    from hf_cpt.modeling import load_causal_lm

    state = PartialState(cpu=not torch.accelerator.is_available())
    data = load_data(args.data, args.split, args.source, args.text_column)
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
        logger.info("Scored %d documents into %s.", len(scores), output / "perplexity.npy")
    state.wait_for_everyone()

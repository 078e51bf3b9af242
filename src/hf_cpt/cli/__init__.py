"""`hf-cpt`: the command line, one sub-command per part of the method.

    hf-cpt score-ppl MODEL DATA --output DIR [--source web-cn] [--split train] [--text-column text]
    hf-cpt synth SNIPPETS --output DIR [--backend transformers|vllm|openai] [--model M] [--base-url URL]
    hf-cpt corrupt DATA --output DIR --fraction 0.3 [--seed 0]
    hf-cpt annotate DATA --output DIR [--taxonomy en|cn|FILE.yaml] [--backend openai --model M --base-url URL]
    hf-cpt train-classifier DATA --output DIR [--taxonomy en] [--model MODEL] [--label-column topic]
    hf-cpt label DATA --classifier DIR --output DIR [--shard-size 4096]
    hf-cpt eval MODEL [--benchmarks bundled scientific ...] [--output DIR] [--baseline before/evaluation.json]
    hf-cpt compare RUN_DIR [RUN_DIR ...] --output DIR
    hf-cpt push FOLDER REPO [--type model|dataset] [--dry-run] [--private]

DATA is a local file (.jsonl, .json, .parquet, .csv), a local dataset folder or a Hub dataset id.

Run under `accelerate launch` to split the work across processes (`accelerate launch -m hf_cpt.cli ...`);
every sub-command is resumable. Each sub-command is a module of `hf_cpt.cli.commands` with `register(subparsers)`
(its arguments) and `run(args)` (its work); the arguments several commands share are in `hf_cpt.cli.arguments`.
"""

from hf_cpt.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

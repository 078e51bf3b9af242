"""`hf-cpt`: the command line, one sub-command per part of the method.

    hf-cpt score-ppl MODEL DATA --output DIR [--source web-cn] [--split train] [--text-column text]
    hf-cpt synth SNIPPETS --output DIR [--backend transformers|vllm|openai] [--model M] [--base-url URL]
    hf-cpt corrupt DATA --output DIR --fraction 0.3 [--seed 0]
    hf-cpt annotate DATA --output DIR [--taxonomy en|cn|FILE.yaml] [--backend openai --model M --base-url URL]
    hf-cpt train-classifier DATA --output DIR [--taxonomy en] [--model MODEL] [--label-column topic]
    hf-cpt label DATA --classifier DIR --output DIR [--shard-size 4096]
    hf-cpt eval MODEL [--benchmarks bundled scientific ...] [--output DIR] [--baseline before/evaluation.json]
    hf-cpt push FOLDER REPO [--type model|dataset] [--dry-run] [--private]

DATA is a local file (.jsonl, .json, .parquet, .csv), a local dataset folder or a Hub dataset id.

Run under `accelerate launch` to split the work across processes; every sub-command is resumable.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_data(path: str, split: str = "train", source: str | None = None, text_column: str = "text"):
    """A `datasets.Dataset` from a local file, a local dataset folder, a Hub id, or a corpus source."""
    from datasets import load_dataset

    from hf_cpt.data.sources import load_source

    if source:
        return load_source(path, source, split, text_column)
    suffix = Path(path).suffix.lower()
    if Path(path).is_file():
        if suffix not in _FILE_FORMATS:
            raise ValueError(f"{path} is a {suffix or 'suffix-less'} file; give a .jsonl, .json, .parquet or .csv.")
        return load_dataset(_FILE_FORMATS[suffix], data_files=path, split=split)
    return load_dataset(path, split=split)


def score_ppl(args: argparse.Namespace) -> None:
    """Per-document perplexity of a corpus: `perplexity.npy` (one float per document, in order) and
    `summary.json` (count, mean, quantiles and the ten difficulty-group boundaries) in `--output`."""
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
        logging.getLogger("hf_cpt").info("Scored %d documents into %s.", len(scores), output / "perplexity.npy")
    state.wait_for_everyone()


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


def synth(args: argparse.Namespace) -> None:
    """Synthetic QA pairs (§3.3) into `--output`: records, data/, rejects.jsonl, report.json, README.md."""
    from hf_cpt.synth import SamplingParams, SynthQAGenerator

    backend = _backend(args)
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
    logging.getLogger("hf_cpt").info(
        "Synthetic QA: %d of %d items accepted, %d kept after filters, in %s.",
        report["accepted"], report["items"], len(pairs), args.output,
    )  # fmt: skip
    if args.push_to_hub:
        generator.push_to_hub(args.push_to_hub, private=args.private, dry_run=args.dry_run)


def corrupt(args: argparse.Namespace) -> None:
    """The §4.2 corruption of a fraction of samples into `--output`: data/ and corruption_report.json."""
    from collections import Counter

    from hf_cpt.synth import corrupt_dataset

    data = load_data(args.data, args.split)
    corrupted = corrupt_dataset(
        data, args.fraction, args.seed, text_column=args.text_column, transforms=args.transforms, num_proc=args.num_proc
    )
    output = Path(args.output)
    (output / "data").mkdir(parents=True, exist_ok=True)
    corrupted.to_parquet(str(output / "data" / "train-00000-of-00001.parquet"))
    edits = Counter(edit["transform"] for edits in corrupted["corruption_edits"] for edit in edits)
    report = {
        "data": args.data,
        "fraction": args.fraction,
        "seed": args.seed,
        "samples": len(corrupted),
        "corrupted": int(sum(corrupted["corrupted"])),
        "edits": dict(edits),
    }
    (output / "corruption_report.json").write_text(json.dumps(report, indent=2))
    logging.getLogger("hf_cpt").info("Corrupted %d of %d samples into %s.", report["corrupted"], len(corrupted), output)


def _backend(args: argparse.Namespace):
    """The generation backend named on the command line (`synth`, `annotate`)."""
    from hf_cpt.synth import load_backend

    options: dict = {}
    if args.backend == "openai":
        options = {"base_url": args.base_url, "max_concurrency": args.max_concurrency, "timeout": args.timeout}
        options["max_tries"] = args.max_tries
    elif args.backend == "transformers":
        options = {"batch_size": args.batch_size}
    return load_backend(args.backend, args.model, **options)


def _add_data_arguments(parser: argparse.ArgumentParser, source: bool = True) -> None:
    """Which documents DATA holds: its split, its text column, and (for a corpus) the source folder."""
    if source:
        parser.add_argument("--source", help="Source folder of a corpus laid out as data/<source>/ (e.g. web-en).")
    parser.add_argument("--split", default="train")
    parser.add_argument("--text-column", default="text")


def _add_backend_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--backend", choices=["transformers", "vllm", "openai"], default="transformers")
    parser.add_argument("--model", help="Model (Hub id or folder; the served name for openai); default: embedded.")
    parser.add_argument("--base-url", default="http://localhost:8000/v1", help="OpenAI-compatible server URL.")
    parser.add_argument("--max-concurrency", type=int, default=8, help="Requests in flight (openai).")
    parser.add_argument("--timeout", type=float, default=120.0, help="Seconds per request (openai).")
    parser.add_argument("--max-tries", type=int, default=5, help="Tries per request before it is recorded failed.")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="Prompts per batch (transformers).")


def _save(dataset, output: Path, split: str = "train") -> Path:
    """A dataset as one parquet file in the Hub layout `data/<split>-00000-of-00001.parquet`."""
    path = output / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(path))
    return path


def annotate(args: argparse.Namespace) -> None:
    """Topic labels from an LLM with the Appendix B prompt (§3.2.1), the classifier's training data."""
    from hf_cpt.topics import annotate_topics

    data = load_data(args.data, args.split, args.source, args.text_column)
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    annotated = annotate_topics(
        data, _backend(args), args.taxonomy, args.output, text_column=args.text_column, max_chars=args.max_chars,
        seed=args.seed,
    )  # fmt: skip
    if args.drop_failed:
        annotated = annotated.filter(lambda row: row["topic_match"] != "failed")
    path = _save(annotated, Path(args.output))
    logging.getLogger("hf_cpt").info("Annotated %d documents into %s.", len(annotated), path)


def train_classifier(args: argparse.Namespace) -> None:
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
    logging.getLogger("hf_cpt").info(
        "Held-out accuracy %.3f, macro-F1 %.3f (majority baseline %.3f); classifier in %s.",
        report.accuracy, report.macro_f1, report.majority_baseline, args.output,
    )  # fmt: skip


def label(args: argparse.Namespace) -> None:
    """`topic` and `topic_probs` for every document, sharded across processes and resumable."""
    from accelerate import PartialState

    from hf_cpt.topics import label_topics

    state = PartialState()
    data = load_data(args.data, args.split, args.source, args.text_column)
    labelled = label_topics(
        data, args.classifier, text_column=args.text_column, batch_size=args.batch_size, max_length=args.max_length,
        bf16=args.bf16, shard_size=args.shard_size, output_dir=Path(args.output) / "shards",
    )  # fmt: skip
    if state.is_main_process:
        path = _save(labelled, Path(args.output), args.split)
        logging.getLogger("hf_cpt").info("Labelled %d documents into %s.", len(labelled), path)
    state.wait_for_everyone()


def evaluate_model(args: argparse.Namespace) -> None:
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


def push(args: argparse.Namespace) -> None:
    """A model folder (with its card) or a generated dataset folder (data/ and README.md) to the Hub."""
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-cpt", description="Continual pre-training with the Llama-3-SynE method.")
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score-ppl", help="Per-document perplexity of a corpus (sharded across processes, resumable)."
    )
    score.add_argument("model", help="Model name on the Hub or local folder.")
    score.add_argument("data", help="Dataset name on the Hub or local folder (or a corpus with --source).")
    score.add_argument("--output", required=True, help="Folder for perplexity.npy, summary.json and shards/.")
    _add_data_arguments(score)
    score.add_argument("--max-length", type=int, help="Tokens per window; default: the model's context.")
    score.add_argument("--stride", type=int, help="Window stride for long documents; default: max_length // 2.")
    score.add_argument("--batch-tokens", type=int, default=8192, help="Token budget of a batch.")
    score.add_argument("--shard-size", type=int, default=4096, help="Documents per shard (unit of resumption).")
    score.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast; default: if supported."
    )
    score.set_defaults(run=score_ppl)

    generate = commands.add_parser("synth", help="Synthetic scientific or code QA pairs from an LLM (resumable).")
    generate.add_argument("snippets", nargs="?", help="Seed snippets with text and discipline columns (scientific_qa).")
    generate.add_argument("--output", required=True, help="Folder for records, data/, report.json and README.md.")
    generate.add_argument("--task", choices=["scientific_qa", "code_qa"], default="scientific_qa")
    generate.add_argument("--num-items", type=int, help="Code pairs to ask for; with snippets: use the first N.")
    generate.add_argument("--code-problems", help="LeetCode-style problems (title, content, python) for code_qa.")
    generate.add_argument("--num-examples", type=int, default=3, help="Demonstrations per code prompt.")
    _add_backend_arguments(generate, batch_size=8)
    generate.add_argument("--max-new-tokens", type=int, default=512)
    generate.add_argument("--temperature", type=float, default=0.7)
    generate.add_argument("--top-p", type=float, default=0.95)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--samples-per-seed", type=int, default=1)
    _add_data_arguments(generate, source=False)
    generate.add_argument("--discipline-column", default="discipline")
    generate.add_argument("--id-column", help="Column naming each snippet; default: the row number.")
    generate.add_argument(
        "--benchmark", nargs="*", default=[], help="Benchmark questions to decontaminate against (.txt or data files)."
    )
    generate.add_argument(
        "--near-dedup-threshold", type=float, default=0.8, help="MinHash Jaccard above which pairs are near duplicates."
    )
    generate.add_argument("--push-to-hub", metavar="REPO", help="Push the dataset and its card to this Hub repo.")
    generate.add_argument("--private", action="store_true", help="Create the Hub repo private.")
    generate.add_argument("--dry-run", action="store_true", help="Stage the upload folder without pushing.")
    generate.set_defaults(run=synth)

    damage = commands.add_parser("corrupt", help="Corrupt a fraction of samples (§4.2): numbers, nouns, adjectives.")
    damage.add_argument("data", help="Dataset to corrupt (file, folder or Hub id).")
    damage.add_argument("--output", required=True, help="Folder for data/ and corruption_report.json.")
    damage.add_argument("--fraction", type=float, required=True, help="Share of samples to corrupt, 0 to 1.")
    damage.add_argument("--seed", type=int, default=0)
    _add_data_arguments(damage, source=False)
    damage.add_argument("--transforms", nargs="+", default=["numbers", "nouns", "adjectives"])
    damage.add_argument("--num-proc", type=int)
    damage.set_defaults(run=corrupt)

    tag = commands.add_parser("annotate", help="Topic labels from an LLM (the classifier's training data).")
    tag.add_argument("data", help="Documents to label (file, folder, Hub id, or a corpus with --source).")
    tag.add_argument("--output", required=True, help="Folder for records, data/ and annotation_report.json.")
    tag.add_argument("--taxonomy", default="en", help="en, cn, or a YAML file with name, language and topics.")
    _add_data_arguments(tag)
    tag.add_argument("--limit", type=int, help="Label only the first N documents (the paper labels a sample).")
    tag.add_argument("--max-chars", type=int, default=2000, help="Characters of each document shown to the LLM.")
    tag.add_argument("--seed", type=int, default=0, help="Shuffles the topic list of each request.")
    tag.add_argument("--drop-failed", action="store_true", help="Leave out documents whose request failed.")
    _add_backend_arguments(tag, batch_size=16)
    tag.set_defaults(run=annotate)

    fit = commands.add_parser("train-classifier", help="Train a topic classifier on labelled documents.")
    fit.add_argument("data", help="Labelled documents (file, folder, Hub id, or a corpus with --source).")
    fit.add_argument("--output", required=True, help="Folder for the classifier, metrics.json and its card.")
    fit.add_argument("--taxonomy", default="en", help="en, cn, or a YAML file with name, language and topics.")
    fit.add_argument("--model", help="Encoder to fine-tune (e.g. huawei-noah/TinyBERT_General_4L_312D); default: "
                     "the embedded all-MiniLM-L6-v2.")  # fmt: skip
    _add_data_arguments(fit)
    fit.add_argument("--label-column", default="topic")
    fit.add_argument("--test-size", type=float, default=0.2, help="Share held out (stratified) for the metrics.")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--epochs", type=float, default=10.0)
    fit.add_argument("--learning-rate", type=float, default=1e-4)
    fit.add_argument("--batch-size", type=int, default=16)
    fit.add_argument("--max-length", type=int, default=256)
    fit.set_defaults(run=train_classifier)

    assign = commands.add_parser("label", help="Label a corpus with a topic classifier (sharded, resumable).")
    assign.add_argument("data", help="Documents to label (file, folder, Hub id, or a corpus with --source).")
    assign.add_argument("--classifier", required=True, help="Classifier folder or Hub id (from train-classifier).")
    assign.add_argument("--output", required=True, help="Folder for data/ and the finished shards.")
    _add_data_arguments(assign)
    assign.add_argument("--batch-size", type=int, default=64)
    assign.add_argument("--max-length", type=int, default=256)
    assign.add_argument("--shard-size", type=int, default=4096, help="Documents per shard (unit of resumption).")
    assign.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast; default: if supported."
    )
    assign.set_defaults(run=label)

    bench = commands.add_parser("eval", help="Benchmarks through lm-eval with the paper's shot counts.")
    bench.add_argument("model", help="Model folder or Hub id.")
    bench.add_argument(
        "--benchmarks", nargs="+", default=["bundled"], help="Benchmark names or suites (major, scientific, bundled)."
    )
    bench.add_argument("--output", help="Folder for evaluation.json and evaluation.md.")
    bench.add_argument("--baseline", help="evaluation.json of the base model: adds the forgetting report.")
    bench.add_argument("--limit", type=int, help="Questions per benchmark (default: all).")
    bench.add_argument("--batch-size", type=int, default=8)
    bench.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    bench.add_argument("--allow-code-execution", action="store_true", help="Run model-written code (HumanEval, MBPP).")
    bench.set_defaults(run=evaluate_model)

    upload = commands.add_parser("push", help="Push a model folder or a generated dataset to the Hub.")
    upload.add_argument("folder", help="A saved model folder (with README.md) or a dataset folder (data/, README.md).")
    upload.add_argument("repo", help="Hub repo id, e.g. me/llama3-syne-cpt.")
    upload.add_argument("--type", choices=["model", "dataset"], default="model")
    upload.add_argument("--private", action="store_true")
    upload.add_argument("--dry-run", action="store_true", help="Stage the upload folder and stop.")
    upload.set_defaults(run=push)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

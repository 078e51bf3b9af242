"""Speed and disk use of `prepare_corpus` against transformers' `run_clm.py` way, in the same run.

The documents: the bundled demo corpus's training documents (every source), copied with a varied first line
("Copy k of document i.") until there are `--docs` of them, each given one of 11 English topics in turn, as one
source `web-en` of a corpus folder (JSON lines). Both sides tokenise them with the same tokenizer (the embedded
SmolLM2's, 49,152 ids) and the same `--num-proc` worker processes, into blocks of `--max-length` tokens:

- `prepare_corpus` (ours), packed per topic (11 groups) as a topic source is, into a new folder each time. Its
  workers call the Rust tokenizer's `encode_batch_fast` with a BPE word cache of 200,000 words (the same ids);
  as the documents repeat 275 texts, that cache hits more often here than on a corpus of fresh text.
- run_clm.py's way: `datasets.map` of `tokenizer(examples["text"])` (batched, `num_proc`, the text column
  removed), then `datasets.map` of its `group_texts` (the function copied from run_clm.py), without topics
  (it has none) and with `load_from_cache_file=False`, so each repeat does the work.

Both start from the same `load_dataset` result (its JSON-to-Arrow conversion is done once, before timing, and
is a cache hit on both sides). Timed: wall clock, from the call to the packed blocks on disk; repeats alternate
the order of the two sides. Tokens/s counts the tokens in the packed blocks each side produced (ours adds an EOS
after each document and drops a tail per topic, run_clm.py adds nothing), documents/s the same documents.
Disk bytes per token: ours, the prepared folder; theirs, the cache files of both maps (the grouped blocks need
the tokenised documents beside them), and of the grouped blocks alone. At 1 x, 2 x and 4 x `--docs` documents.

    python benchmarks/prepare.py [--docs 20000] [--scales 1 2 4] [--num-proc 2] [--repeats 3] [--max-length 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from itertools import chain
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # both sides: one thread per worker process

import datasets  # noqa: E402
from datasets import load_dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hf_cpt.data import DEMO_CORPUS_PATH  # noqa: E402
from hf_cpt.data.prepare import prepare_corpus  # noqa: E402
from hf_cpt.modeling import EMBEDDED_GGUF, embedded_package_dir  # noqa: E402

TOPICS = [
    "Mathematics and Physics", "Computer Science and Engineering", "Biology and Chemistry", "History and Geography",
    "Law and Policy", "Philosophy and Logic", "Economics and Business", "Psychology and Sociology",
    "Security and International Relations", "Medicine and Health", "Others",
]  # fmt: skip


def write_corpus(folder: Path, docs: int) -> Path:
    """`docs` documents made from the demo corpus's training documents, in `folder/data/web-en/train.jsonl`."""
    texts = []
    for path in sorted(Path(DEMO_CORPUS_PATH, "data").glob("*/train*.jsonl")):
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    target = folder / "data" / "web-en" / "train.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for index in range(docs):
            text = f"Copy {index // len(texts)} of document {index % len(texts)}.\n{texts[index % len(texts)]}"
            out.write(json.dumps({"text": text, "topic": TOPICS[index % len(TOPICS)]}) + "\n")
    return folder


def folder_bytes(paths: list[str]) -> int:
    return sum(os.path.getsize(path) for path in paths)


def ours(corpus: Path, tokenizer, args, work: Path) -> tuple[int, int]:
    """Packed tokens and bytes on disk of `prepare_corpus`."""
    folder = prepare_corpus(str(corpus), ["web-en"], tokenizer, args.max_length, topic_sources=["web-en"],
                            num_proc=args.num_proc, output_dir=work / "prepared")  # fmt: skip
    manifest = json.loads((folder / "corpus.json").read_text())
    tokens = sum(manifest["train_blocks"].values()) * args.max_length
    return tokens, folder_bytes([str(path) for path in folder.rglob("*") if path.is_file()])


def run_clm(corpus: Path, tokenizer, args, work: Path) -> tuple[int, int, int]:
    """Packed tokens, bytes of both maps' cache files and of the grouped blocks' alone, run_clm.py's way."""
    raw = load_dataset(str(corpus), data_dir="data/web-en", split="train")
    block_size = args.max_length

    def tokenize_function(examples):
        return tokenizer(examples["text"])

    tokenized = raw.map(
        tokenize_function, batched=True, num_proc=args.num_proc, remove_columns=raw.column_names,
        load_from_cache_file=False, cache_file_name=str(work / "tokenized.arrow"),
    )  # fmt: skip

    def group_texts(examples):  # as in transformers' examples/pytorch/language-modeling/run_clm.py
        concatenated_examples = {k: list(chain(*examples[k])) for k in examples.keys()}  # noqa: SIM118
        total_length = len(concatenated_examples[list(examples.keys())[0]])
        total_length = (total_length // block_size) * block_size
        result = {
            k: [t[i : i + block_size] for i in range(0, total_length, block_size)]
            for k, t in concatenated_examples.items()
        }
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True, num_proc=args.num_proc, load_from_cache_file=False,
                            cache_file_name=str(work / "grouped.arrow"))  # fmt: skip
    grouped_bytes = folder_bytes([file["filename"] for file in grouped.cache_files])
    return (
        len(grouped) * block_size,
        folder_bytes([f["filename"] for f in tokenized.cache_files]) + grouped_bytes,
        grouped_bytes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000, help="Documents at 1 x.")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=2048)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(embedded_package_dir(), gguf_file=EMBEDDED_GGUF)
    root = Path(tempfile.mkdtemp(prefix="prepare-bench-"))
    print(f"tokenizer: SmolLM2 ({len(tokenizer):,} ids), num_proc={args.num_proc}, max_length={args.max_length}")
    header = "| documents | method | seconds (median) | docs/s | tokens/s | speed ratio | bytes/token |"
    rows = [header, "|---:|---|---:|---:|---:|---:|---:|"]
    try:
        for scale in args.scales:
            docs = args.docs * scale
            corpus = write_corpus(root / f"corpus-{scale}", docs)
            load_dataset(str(corpus), data_dir="data/web-en", split="train")  # the JSON-to-Arrow cache, untimed
            seconds: dict[str, list[float]] = {"ours": [], "run_clm": []}
            result: dict[str, tuple] = {}
            for repeat in range(args.repeats):
                for name in ("ours", "run_clm") if repeat % 2 == 0 else ("run_clm", "ours"):
                    work = root / f"{name}-{scale}-{repeat}"
                    work.mkdir()
                    start = time.perf_counter()
                    result[name] = (ours if name == "ours" else run_clm)(corpus, tokenizer, args, work)
                    seconds[name].append(time.perf_counter() - start)
                    shutil.rmtree(work)
            median = {name: statistics.median(values) for name, values in seconds.items()}
            speed = {name: result[name][0] / median[name] for name in median}
            ratio = speed["ours"] / speed["run_clm"]
            ours_bytes = result["ours"][1] / result["ours"][0]
            theirs_bytes, grouped_bytes = (value / result["run_clm"][0] for value in result["run_clm"][1:])
            print(f"{docs:,} documents: ours {median['ours']:.2f} s, run_clm.py's way {median['run_clm']:.2f} s; "
                  f"tokens/s ratio {ratio:.2f}, docs/s ratio {median['run_clm'] / median['ours']:.2f}; bytes/token "
                  f"ours {ours_bytes:.2f}, theirs {theirs_bytes:.2f} (grouped alone {grouped_bytes:.2f})",
                  flush=True)  # fmt: skip
            rows.append(f"| {docs:,} | `prepare_corpus` | {median['ours']:.2f} | {docs / median['ours']:,.0f} | "
                        f"{speed['ours']:,.0f} | {ratio:.2f} | {ours_bytes:.2f} |")  # fmt: skip
            rows.append(f"| {docs:,} | run_clm.py | {median['run_clm']:.2f} | {docs / median['run_clm']:,.0f} | "
                        f"{speed['run_clm']:,.0f} | 1.00 | {theirs_bytes:.2f} "
                        f"({grouped_bytes:.2f} grouped) |")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

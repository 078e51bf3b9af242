"""Throughput of `label_topics` against `transformers.pipeline("text-classification")` (goal: ours >= 2x).

Both label the same documents with the same model and tokenizer: the embedded all-MiniLM-L6-v2 with a
new, untrained classification head over the 11 English topics (accuracy is irrelevant here, speed is),
documents truncated to `--max-length` tokens, batches of `--batch-size` documents, on the CPU.

- ours: `label_topics(dataset, model, tokenizer=..., show_progress=False)` with a fresh temporary
  `output_dir` per call, so nothing is read back from an earlier call. Timed end to end: fingerprints,
  tokenisation, the length-sorted batches, the shard write and the new dataset columns.
- pipeline: `pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
  truncation=True, max_length=..., batch_size=...)` over the list of documents, in their order.

Both run in fp32 (`--bf16` puts ours under bf16 autocast, which the pipeline has no switch for; that
row then measures what a user gets by default on bf16 hardware, not a like-for-like comparison).

Documents: the bundled English web documents (`web-en`, train) replicated to `--documents` documents,
each cut to a lognormal number of words (median 60, clipped to [5, whole document]), so lengths are
mixed as in a web crawl. The methods run interleaved within each repeat (ours, pipeline, ours, ...)
after an untimed warm-up of each; documents/s is over the median time of `--repeats` repeats.

    python benchmarks/labeling.py [--documents 2000] [--repeats 3] [--batch-size 64] [--max-length 256] [--bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from hf_cpt.data import DEMO_CORPUS_PATH, load_source  # noqa: E402
from hf_cpt.topics.classifier import embedded_classifier_path  # noqa: E402
from hf_cpt.topics.labeling import label_topics  # noqa: E402
from hf_cpt.topics.taxonomy import ENGLISH  # noqa: E402


def mixed_length_documents(count: int, seed: int = 0) -> list[str]:
    """The demo web documents, replicated and cut to lognormal word counts (median 60)."""
    texts = load_source(DEMO_CORPUS_PATH, "web-en", "train")["text"]
    rng = np.random.default_rng(seed)
    documents = []
    for index in range(count):
        words = texts[index % len(texts)].split()
        keep = int(np.clip(rng.lognormal(np.log(60), 0.8), 5, len(words)))
        documents.append(" ".join(words[:keep]))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--bf16", action="store_true", help="run ours under bf16 autocast")
    args = parser.parse_args()
    transformers_logging.set_verbosity_error()

    folder = embedded_classifier_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(ENGLISH), id2label=dict(enumerate(ENGLISH.topics))
    ).eval()
    documents = mixed_length_documents(args.documents)
    dataset = Dataset.from_dict({"text": documents})
    classify = pipeline(
        "text-classification", model=model, tokenizer=tokenizer, top_k=None, truncation=True,
        max_length=args.max_length, batch_size=args.batch_size, device="cpu",
    )  # fmt: skip

    def ours(data: Dataset) -> None:
        with tempfile.TemporaryDirectory() as output_dir:
            label_topics(
                data, model, tokenizer=tokenizer, batch_size=args.batch_size, max_length=args.max_length,
                bf16=args.bf16, output_dir=output_dir, show_progress=False,
            )  # fmt: skip

    def baseline(data: Dataset) -> None:
        classify(list(data["text"]))

    methods = {"ours": ours, "pipeline": baseline}
    for method in methods.values():  # warm-up: thread pools, allocator, lazy imports
        method(dataset.select(range(min(64, len(dataset)))))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for repeat in range(args.repeats):
        for name, method in methods.items():
            started = time.perf_counter()
            method(dataset)
            times[name].append(time.perf_counter() - started)
        print(f"repeat {repeat}: ours/pipeline speed ratio {times['pipeline'][-1] / times['ours'][-1]:.2f}")
    rates = {name: len(documents) / statistics.median(values) for name, values in times.items()}
    tokens = sum(len(ids) for ids in tokenizer(documents, truncation=True, max_length=args.max_length)["input_ids"])
    dtype = "bf16 autocast (ours)" if args.bf16 else "fp32"
    print(
        f"\n{len(documents)} documents, {tokens / len(documents):.0f} tokens each on average, "
        f"batch {args.batch_size}, {dtype}, {torch.get_num_threads()} threads\n"
    )
    print("| label_topics (docs/s) | pipeline (docs/s) | ratio |")
    print("|---|---|---|")
    print(f"| {rates['ours']:.1f} | {rates['pipeline']:.1f} | {rates['ours'] / rates['pipeline']:.2f}x |")


if __name__ == "__main__":
    main()

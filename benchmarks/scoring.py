"""Throughput of `score_perplexity` against a padding-free forward pass (goal: ours/limit >= 0.9) and naive batching.

All three methods see the same documents, tokenised by the same tokenizer, windowed the same way
(`document_windows`, `max_length` tokens advancing by `stride = max_length // 2`), under the same
dtype setting (fp32, or bf16 autocast with `--bf16`) and `torch.no_grad()`:

- ours: `score_perplexity(..., show_progress=False)` with a fresh temporary `output_dir` per call, so
  nothing is read back from an earlier call. Timed end to end: tokenisation, fingerprints, the
  length-bucketed forward passes, the per-token NLL and the shard write. Its padding waste is computed
  by replaying its batching with the library's own functions: every document's windows
  (`document_windows`), sorted by length, batched by `length_buckets`, shard by shard.
- limit: a bare forward pass (`model(input_ids=...)`, no attention mask, no loss) over the same window
  tokens with no padding at all: the windows' tokens concatenated and cut into rows of one length L,
  `batch_tokens // L` rows per batch. Tokenisation is not timed: this is the ceiling for the forward
  passes alone. L defaults to the token-weighted mean window length (sum of squared lengths / sum of
  lengths), not the median: a token of a window of length n attends over up to n positions, so with
  this L the limit does, per token, the attention work ours does, and differs from ours only by padding
  and overheads. (The median window is short, since most documents are; rows of that length would make
  the limit cheaper per token than any scoring of these documents can be. Pass `--limit-length` to
  choose L.)
- naive: the windows in dataset order, a fixed number B of windows per batch, each batch padded to its
  longest window, with ours' per-token NLL (cross-entropy over the logits, accumulated per document).
  B is chosen so that the average batch size in tokens (batch size x longest window, what ours' budget
  bounds) is as close as possible to ours'. Timed like ours: tokenisation included.

Tokens, for every method, are the documents' tokens (what ours is asked to score); tokens/s is that
count over the median wall-clock time of `--repeats` repeats (each repeat's ratios are printed too).
The methods run interleaved within each repeat (ours, limit, naive, ours, ...) so drift hits all
alike, after one untimed warm-up of each on a few documents.

Defaults: a tiny random Llama (hidden 256, 4 layers, vocab 4096, seed 0) with a whitespace word-level
tokenizer over 4093 synthetic words, on the CPU; documents of lognormal word counts (median 100)
clipped to [5, 2000], so many are short and some are longer than the context (and so windowed).

    python benchmarks/scoring.py [--documents 1000] [--repeats 3] [--max-length 512] [--batch-tokens 8192]
                                 [--bf16] [--model PATH] [--limit-length L] [--device cpu]
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
import torch.nn.functional as F  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
)

from hf_cpt.curriculum import score_perplexity  # noqa: E402
from hf_cpt.curriculum.scoring import document_windows, length_buckets  # noqa: E402
from hf_cpt.testing import WORD_SPECIALS, tiny_llama, word_tokenizer  # noqa: E402

VOCAB = 4096
WORDS = [f"w{i}" for i in range(VOCAB - len(WORD_SPECIALS))]  # specials + words = the model's 4096 ids
SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, context=512)


def synthetic_documents(count: int, seed: int) -> list[str]:
    """Long-tailed lengths: lognormal word counts (median 100) clipped to [5, 2000]."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=np.log(100), sigma=1.0, size=count), 5, 2000).astype(int)
    return [" ".join(rng.choice(WORDS, size=length)) for length in lengths]


def all_windows(token_ids: list[list[int]], max_length: int, stride: int) -> list:
    return [
        window
        for index, ids in enumerate(token_ids)
        for window in document_windows(index, len(ids), max_length, stride)
    ]


def ours_batches(token_ids: list[list[int]], max_length: int, stride: int, batch_tokens: int, shard_size: int):
    """(batch size, longest window) of every batch `score_perplexity` builds, shard by shard."""
    batches = []
    for shard in range(0, len(token_ids), shard_size):
        lengths = sorted(
            w.end - w.begin for w in all_windows(token_ids[shard : shard + shard_size], max_length, stride)
        )
        batches += [(stop - start, lengths[stop - 1]) for start, stop in length_buckets(lengths, batch_tokens)]
    return batches


def naive_shapes(window_lengths: list[int], per_batch: int) -> list[tuple[int, int]]:
    """(batch size, longest window) of every batch of `per_batch` windows in dataset order."""
    return [
        (len(window_lengths[first : first + per_batch]), max(window_lengths[first : first + per_batch]))
        for first in range(0, len(window_lengths), per_batch)
    ]


def naive_batch_size(window_lengths: list[int], target: float) -> int:
    """The windows per batch whose average padded batch size in dataset order comes closest to `target` tokens."""
    best, best_gap = 1, float("inf")
    for per_batch in range(1, len(window_lengths) + 1):
        mean = statistics.mean(size * longest for size, longest in naive_shapes(window_lengths, per_batch))
        if abs(mean - target) < best_gap:
            best, best_gap = per_batch, abs(mean - target)
        if mean > target:
            break
    return best


def waste(batches: list[tuple[int, int]], real: int) -> float:
    """Padded positions / all positions, in percent."""
    total = sum(size * longest for size, longest in batches)
    return 100 * (total - real) / total


def run_ours(model, tokenizer, texts, max_length, stride, batch_tokens, bf16, shard_size) -> tuple[float, np.ndarray]:
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        scores = score_perplexity(
            model,
            tokenizer,
            texts,
            max_length=max_length,
            stride=stride,
            batch_tokens=batch_tokens,
            bf16=bf16,
            shard_size=shard_size,
            output_dir=output_dir,
            show_progress=False,
        )
        return time.perf_counter() - start, scores


@torch.no_grad()
def run_limit(model, rows: list[torch.Tensor], rows_per_batch: int, bf16: bool, device: torch.device) -> float:
    start = time.perf_counter()
    for first in range(0, len(rows), rows_per_batch):
        input_ids = torch.stack(rows[first : first + rows_per_batch]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(input_ids=input_ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def limit_rows(token_ids: list[list[int]], windows: list, length: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The windows' tokens concatenated and cut into rows of `length` (the remainder as one shorter row)."""
    stream = torch.tensor([t for w in windows for t in token_ids[w.document][w.begin : w.end]], dtype=torch.long)
    full = len(stream) // length * length
    rows = list(stream[:full].view(-1, length))
    remainder = stream[full:]
    return rows, remainder


@torch.no_grad()
def run_naive(model, tokenizer, texts, max_length, stride, per_batch, bf16, pad_token_id) -> tuple[float, np.ndarray]:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    token_ids = tokenizer(list(texts))["input_ids"]
    windows = all_windows(token_ids, max_length, stride)  # dataset order
    nll = np.zeros(len(token_ids), dtype=np.float64)
    counted = np.zeros(len(token_ids), dtype=np.int64)
    for first in range(0, len(windows), per_batch):
        batch = windows[first : first + per_batch]
        width = max(w.end - w.begin for w in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, window in enumerate(batch):
            ids = torch.tensor(token_ids[window.document][window.begin : window.end])
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
            offset = window.target - window.begin
            labels[row, offset : len(ids)] = ids[offset:]
        input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        targets = F.pad(labels, (0, 1), value=-100)[:, 1:]
        token_nll = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="none"
        ).view(targets.shape)
        documents = np.array([window.document for window in batch])
        np.add.at(nll, documents, token_nll.sum(dim=1).double().cpu().numpy())
        np.add.at(counted, documents, targets.ne(-100).sum(dim=1).cpu().numpy())
    scores = np.exp(nll / counted)
    elapsed = time.perf_counter() - start
    model.train(was_training)
    return elapsed, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="a model folder (AutoModelForCausalLM + AutoTokenizer)")
    parser.add_argument("--max-length", type=int, default=None, help="default: 512 (tiny model) or the model's context")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for all three methods")
    parser.add_argument(
        "--limit-length",
        type=int,
        default=None,
        help="row length of the limit; default: token-weighted mean window length",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()

    device = torch.device(options.device)
    if options.model:
        model = AutoModelForCausalLM.from_pretrained(options.model, dtype=torch.float32)  # bf16: autocast
        tokenizer = AutoTokenizer.from_pretrained(options.model)
        max_length = options.max_length or model.config.max_position_embeddings
    else:
        model, tokenizer = tiny_llama(VOCAB, **SHAPE), word_tokenizer(WORDS)
        max_length = options.max_length or 512
    model.to(device).eval()
    stride = max(1, max_length // 2)
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    texts = synthetic_documents(options.documents, options.seed)

    # Fixed facts of the workload: tokens, windows, ours' batches and padding, the limit's rows, naive's batches.
    token_ids = tokenizer(texts)["input_ids"]
    tokens = sum(len(ids) for ids in token_ids)
    windows = all_windows(token_ids, max_length, stride)
    window_lengths = [w.end - w.begin for w in windows]
    positions = sum(window_lengths)
    batches = ours_batches(token_ids, max_length, stride, options.batch_tokens, options.shard_size)
    weighted = sum(n * n for n in window_lengths) / positions
    length = options.limit_length or round(weighted)
    rows, remainder = limit_rows(token_ids, windows, length)
    rows_per_batch = max(1, options.batch_tokens // length)
    per_batch = naive_batch_size(window_lengths, statistics.mean(size * longest for size, longest in batches))
    naive_batches = naive_shapes(window_lengths, per_batch)

    def limit() -> float:
        elapsed = run_limit(model, rows, rows_per_batch, options.bf16, device)
        if len(remainder):
            elapsed += run_limit(model, [remainder], 1, options.bf16, device)
        return elapsed

    def ours() -> float:
        elapsed, scores = run_ours(
            model, tokenizer, texts, max_length, stride, options.batch_tokens, options.bf16, options.shard_size
        )
        results["ours"] = scores
        return elapsed

    def naive() -> float:
        elapsed, scores = run_naive(model, tokenizer, texts, max_length, stride, per_batch, options.bf16, pad_token_id)
        results["naive"] = scores
        return elapsed

    def tokenise() -> float:
        start = time.perf_counter()
        tokenizer(list(texts))
        return time.perf_counter() - start

    # Untimed warm-up of each method on a few documents (first-call allocations, kernel selection).
    warm = texts[: min(50, len(texts))]
    run_ours(model, tokenizer, warm, max_length, stride, options.batch_tokens, options.bf16, options.shard_size)
    run_naive(model, tokenizer, warm, max_length, stride, per_batch, options.bf16, pad_token_id)
    run_limit(model, rows[:rows_per_batch], rows_per_batch, options.bf16, device)

    results: dict[str, np.ndarray] = {}
    times: dict[str, list[float]] = {"ours": [], "limit": [], "naive": [], "tokenisation": []}
    for _ in range(options.repeats):
        times["ours"].append(ours())
        times["limit"].append(limit())
        times["naive"].append(naive())
        times["tokenisation"].append(tokenise())
    seconds = {name: statistics.median(values) for name, values in times.items()}
    speed = {name: tokens / seconds[name] for name in ("ours", "limit", "naive")}

    print(
        f"{options.documents:,} documents, {tokens:,} tokens ({min(len(ids) for ids in token_ids)} to "
        f"{max(len(ids) for ids in token_ids)} per document), {len(windows):,} windows of up to {max_length} "
        f"(stride {stride}), {positions:,} window positions; model {options.model or 'tiny random Llama'}, "
        f"{'bf16 autocast' if options.bf16 else 'fp32'}, device {device}, {torch.get_num_threads()} torch threads; "
        f"median of {options.repeats} repeats"
    )
    print(
        f"ours: {len(batches):,} batches (budget {options.batch_tokens:,} tokens); "
        f"mean padded batch {statistics.mean(size * longest for size, longest in batches):,.0f} tokens; "
        f"limit: {len(rows):,} rows of {length} + {len(remainder)} tokens, {rows_per_batch} rows per batch "
        f"(window length: token-weighted mean {weighted:.0f}, median {statistics.median(window_lengths):.0f}); "
        f"naive: {len(naive_batches):,} batches of {per_batch} windows, mean padded batch "
        f"{statistics.mean(size * longest for size, longest in naive_batches):,.0f} tokens"
    )
    print()
    print("| method | tokens | seconds | tokens/s | padding waste % |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| ours (score_perplexity) | {tokens:,} | {seconds['ours']:.2f} | {speed['ours']:,.0f} | "
        f"{waste(batches, positions):.1f} |"
    )
    print(f"| limit (bare forward, no padding) | {tokens:,} | {seconds['limit']:.2f} | {speed['limit']:,.0f} | 0.0 |")
    print(
        f"| naive (dataset order, {per_batch} per batch) | {tokens:,} | {seconds['naive']:.2f} | "
        f"{speed['naive']:,.0f} | {waste(naive_batches, positions):.1f} |"
    )
    print()
    for other, goal in (("limit", " (goal >= 0.9)"), ("naive", "")):
        per_repeat = [theirs / mine for mine, theirs in zip(times["ours"], times[other], strict=True)]
        print(
            f"ours / {other}: {speed['ours'] / speed[other]:.3f}{goal}; per repeat "
            f"{', '.join(f'{r:.3f}' for r in per_repeat)} (median {statistics.median(per_repeat):.3f})"
        )
    print(
        f"tokenisation alone (in ours and naive, not in limit): {seconds['tokenisation']:.2f} s "
        f"({100 * seconds['tokenisation'] / seconds['ours']:.1f}% of ours)"
    )
    gap = np.max(np.abs(results["ours"] / results["naive"] - 1))
    print(f"largest relative difference between ours' and naive's perplexities: {gap:.1e}")
    print("per-repeat seconds: " + "; ".join(f"{n} " + ", ".join(f"{t:.2f}" for t in v) for n, v in times.items()))


if __name__ == "__main__":
    main()

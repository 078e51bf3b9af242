"""Throughput of `TransformersBackend` generating synthetic QA, batched against one prompt at a time (goal: >= 4x).

Both sides are the same `TransformersBackend` over the same loaded model (the embedded SmolLM2-135M-Instruct by
default) and the same conversations: the paper's scientific QA prompt (`scientific_qa_messages`) over the bundled
science snippets (`demo_snippets_path()`), the first `--prompts` of them. Decoding is greedy
(`SamplingParams(temperature=0)`), so both sides should write the same tokens; the script checks and prints how many
completions are identical.

- batched: `batch_size=B` (default 8): the backend sorts the prompts by length, left-pads each batch and runs one
  `model.generate` per batch.
- single: `batch_size=1`: one `model.generate` per prompt, no padding.

Generated tokens are the sum of `Completion.completion_tokens` (up to and including an end-of-turn token); tokens/s
and prompts/s are over the median wall-clock time of `--repeats` repeats. Within each repeat both sides run back to
back, alternating which goes first, so drift on a shared machine hits both alike; the ratio batched / single is given
per repeat (and their median) and overall (from the median times). One untimed warm-up of each side comes first.

Also printed, to explain the ratio: the batched side's prompt padding (left-padded positions / all prompt positions)
and its decode waste (positions a batch keeps decoding for rows that already stopped, since a batch runs until its
longest row ends / all decoded positions).

    python benchmarks/generation.py [--batch-size 8] [--prompts 8] [--max-new-tokens 48] [--repeats 2]
                                    [--bf16 | --no-bf16] [--model PATH]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402

from hf_cpt.data import demo_snippets_path  # noqa: E402
from hf_cpt.generation import Completion, SamplingParams, TransformersBackend  # noqa: E402
from hf_cpt.modeling import embedded_model_path  # noqa: E402
from hf_cpt.synth.prompts import scientific_qa_messages  # noqa: E402


def conversations(count: int) -> list[list[dict[str, str]]]:
    """The scientific QA chat for the first `count` bundled snippets (cycling if there are fewer)."""
    snippets = datasets.load_dataset("json", data_files=demo_snippets_path(), split="train")
    rows = [snippets[index % len(snippets)] for index in range(count)]
    return [scientific_qa_messages(row["text"], row["discipline"]) for row in rows]


def timed(backend: TransformersBackend, chats, params: SamplingParams) -> tuple[float, list[Completion]]:
    start = time.perf_counter()
    completions = backend.generate(chats, params)
    return time.perf_counter() - start, completions


def batch_waste(prompt_lengths: list[int], counts: list[int], batch_size: int) -> tuple[float, float]:
    """(prompt padding %, decode waste %) of the batched side, replaying the backend's longest-first batching."""
    order = sorted(range(len(prompt_lengths)), key=lambda index: -prompt_lengths[index])
    padded_prompt = real_prompt = decoded = real_decoded = 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        padded_prompt += len(batch) * max(prompt_lengths[index] for index in batch)
        real_prompt += sum(prompt_lengths[index] for index in batch)
        decoded += len(batch) * max(counts[index] for index in batch)
        real_decoded += sum(counts[index] for index in batch)
    return 100 * (padded_prompt - real_prompt) / padded_prompt, 100 * (decoded - real_decoded) / decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast for both sides; default: the backend's choice (on where the hardware supports bf16)",
    )
    parser.add_argument("--model", default=None, help="a chat model folder; default: the embedded SmolLM2")
    options = parser.parse_args()

    model = options.model or str(embedded_model_path())
    batched = TransformersBackend(model, batch_size=options.batch_size, bf16=options.bf16)
    single = TransformersBackend(batched.model, batched.tokenizer, batch_size=1, bf16=batched.use_bf16)
    chats = conversations(options.prompts)
    params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=0)
    prompt_lengths = [len(batched.encode(chat)) for chat in chats]

    # Untimed warm-up of each side (first-call allocations, kernel selection).
    warm = chats[: min(options.batch_size, len(chats))]
    warm_params = SamplingParams(max_new_tokens=4, temperature=0)
    batched.generate(warm, warm_params)
    single.generate(warm[:1], warm_params)

    sides = {"batched": batched, "single": single}
    times: dict[str, list[float]] = {"batched": [], "single": []}
    results: dict[str, list[Completion]] = {}
    for repeat in range(options.repeats):
        for name in ("batched", "single") if repeat % 2 == 0 else ("single", "batched"):
            elapsed, results[name] = timed(sides[name], chats, params)
            times[name].append(elapsed)

    tokens = {name: sum(c.completion_tokens for c in completions) for name, completions in results.items()}
    seconds = {name: statistics.median(values) for name, values in times.items()}
    speed = {name: tokens[name] / seconds[name] for name in sides}
    rate = {name: len(chats) / seconds[name] for name in sides}
    per_repeat = [
        (tokens["batched"] / many) / (tokens["single"] / one)
        for many, one in zip(times["batched"], times["single"], strict=True)
    ]
    failed = sum(not c.ok for completions in results.values() for c in completions)
    same = sum(a.text == b.text for a, b in zip(results["batched"], results["single"], strict=True))
    counts = [c.completion_tokens for c in results["batched"]]
    padding, decode_waste = batch_waste(prompt_lengths, counts, options.batch_size)
    stopped = sum(c.finish_reason == "stop" for c in results["batched"])
    dtype = "bf16 autocast" if batched.use_bf16 else "fp32"
    model_name = os.path.basename(batched.model_name.rstrip(os.sep))

    print(
        f"{len(chats)} prompts of {min(prompt_lengths)} to {max(prompt_lengths)} tokens "
        f"(mean {statistics.mean(prompt_lengths):.0f}), up to {options.max_new_tokens} new tokens, greedy; "
        f"model {model_name}, {dtype}, device {batched.model.device}, {torch.get_num_threads()} torch threads; "
        f"median of {options.repeats} repeats"
    )
    print(
        f"batched (batch {options.batch_size}): prompt padding {padding:.1f}%, decode waste {decode_waste:.1f}% "
        f"({stopped} of {len(chats)} rows stopped before the limit); failed completions: {failed}"
    )
    print(f"identical completions, batched vs single: {same} of {len(chats)}")
    print()
    print("| side | generated tokens | seconds | tokens/s | prompts/s |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("batched", f"batched (batch_size={options.batch_size})"), ("single", "single (batch_size=1)")):
        print(f"| {label} | {tokens[name]:,} | {seconds[name]:.2f} | {speed[name]:.1f} | {rate[name]:.3f} |")
    print()
    ratio = speed["batched"] / speed["single"]
    print(
        f"batched / single tokens/s: {ratio:.2f} (goal >= 4); per repeat "
        f"{', '.join(f'{r:.2f}' for r in per_repeat)} (median {statistics.median(per_repeat):.2f})"
    )
    print("per-repeat seconds: " + "; ".join(f"{n} " + ", ".join(f"{t:.2f}" for t in v) for n, v in times.items()))
    print()
    print("| date | machine | batch | dtype | prompts x new tokens | single tokens/s | batched tokens/s | ratio |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    print(
        f"| {datetime.date.today()} | {os.cpu_count()}-core CPU, torch {torch.__version__.split('+')[0]} | "
        f"{options.batch_size} | {dtype} | {len(chats)} x {options.max_new_tokens} | {speed['single']:.1f} | "
        f"{speed['batched']:.1f} | {statistics.median(per_repeat):.2f} |"
    )


if __name__ == "__main__":
    main()

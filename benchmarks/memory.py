"""Peak memory and step time of CPTTrainer against a plain transformers.Trainer at a 128k vocabulary (CPU).

The model is a tiny Llama (hidden 64, 2 layers) with Llama-3's vocabulary of 128,256, so that the output
embeddings and the loss are most of a step, as the logits are most of a Llama-3-8B step's memory (4.2 GB
per 8,192-token sequence in float32). Every variant trains the same model from the same seed on the same
blocks (`--batch` x `--max_length` tokens, fp32 unless `--bf16`), AdamW, no activation checkpointing:

- `plain`: `transformers.Trainer`, the model's own loss from its full logits (the baseline);
- `cpt`: `CPTTrainer` as configured by default: hidden states, then the chunked loss (`--chunk` positions);
- `cpt-logits`: `CPTTrainer` with `loss_chunk_size=0` (the loss from the model's full logits, as before);
- `checkpoint`: the design not chosen, measured beside it: `CPTTrainer` whose chunks go through
  `torch.utils.checkpoint` (autograd's cross-entropy per chunk, recomputed in backward) instead of the custom
  autograd function, same chunk size.

Method. Each measurement runs in a fresh Python subprocess, so no variant inherits another's allocator state.
After `--warmup` steps (optimizer state allocated, first-call costs paid) the process resets its peak resident
set size (`/proc/self/clear_refs`, value 5) and records its RSS; after the timed steps it reads the peak
(`VmHWM`). Peak memory is that peak minus the RSS at the reset: what one training step adds on top of model,
optimizer and data, as the operating system counts it (every allocator, not only torch's). Step time is the
median over the timed steps of `on_step_begin` -> `on_step_end`. The variants run interleaved, the order
rotated every repeat; ratios against `plain` are taken within a repeat, and the table shows medians over
repeats.

Exactness is checked in this process on the same model and blocks: the per-group losses `CPTTrainer` logs
against a float64 reference, and its gradients against the plain path's.

    python benchmarks/memory.py [--repeats 3] [--max_length 1024] [--batch 2] [--chunk 1024] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from datasets import ClassLabel, Dataset  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

import hf_cpt.linear_cross_entropy  # noqa: E402
from hf_cpt import CPTConfig, CPTTrainer  # noqa: E402
from hf_cpt.testing import tiny_llama  # noqa: E402
from hf_cpt.trainer import collate_blocks  # noqa: E402

VOCAB = 128_256
GROUPS = ["web-en/Mathematics and Physics", "book-en"]
VARIANTS = ("plain", "cpt", "cpt-logits", "checkpoint")


def blocks(n: int, max_length: int) -> Dataset:
    rng = np.random.default_rng(0)
    data = Dataset.from_dict(
        {"input_ids": rng.integers(3, VOCAB, size=(n, max_length)).tolist(), "group": (np.arange(n) % 2).tolist()}
    )
    return data.cast_column("group", ClassLabel(names=GROUPS))


def checkpointed_linear_cross_entropy(hidden, weight, targets, bias=None, chunk_size=1024):
    """The alternative design: autograd's cross-entropy per chunk under `torch.utils.checkpoint`."""

    def chunk_nll(chunk: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(F.linear(chunk, weight, bias).float(), chunk_targets, reduction="none")

    pieces = [
        checkpoint(
            chunk_nll, hidden[start : start + chunk_size], targets[start : start + chunk_size], use_reentrant=False
        )
        for start in range(0, hidden.shape[0], chunk_size)
    ]
    return torch.cat(pieces)


def read_status(field: str) -> int:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}; this benchmark needs Linux.")


class StepProbe(TrainerCallback):
    """Times every step; after the warm-up steps resets the peak RSS, and reads it at the end."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self.rss_at_reset = 0
        self.peak = 0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.perf_counter() - self._start
        if state.global_step == self.warmup:
            Path("/proc/self/clear_refs").write_text("5")
            self.rss_at_reset = read_status("VmRSS")
        elif state.global_step > self.warmup:
            self.times.append(elapsed)

    def on_train_end(self, args, state, control, **kwargs):
        self.peak = read_status("VmHWM")


def train_arguments(output_dir: str, steps: int, batch: int, bf16: bool) -> dict:
    return dict(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch,
        use_cpu=True,
        bf16=bf16,
        report_to="none",
        save_strategy="no",
        logging_steps=steps,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )


def measure(variant: str, options: argparse.Namespace) -> dict:
    """One variant's step time and peak memory (run in a fresh subprocess)."""
    steps = options.warmup + options.steps
    data = blocks(steps * options.batch, options.max_length)
    probe = StepProbe(options.warmup)
    model = tiny_llama(VOCAB, context=options.max_length)
    with tempfile.TemporaryDirectory() as output_dir:
        common = train_arguments(output_dir, steps, options.batch, options.bf16)
        if variant == "plain":
            trainer = Trainer(
                model=model,
                args=TrainingArguments(**common),
                train_dataset=data.remove_columns("group"),
                data_collator=collate_blocks,
                callbacks=[probe],
            )
        else:
            if variant == "checkpoint":
                hf_cpt.linear_cross_entropy.linear_cross_entropy = checkpointed_linear_cross_entropy
            chunk = 0 if variant == "cpt-logits" else options.chunk
            args = CPTConfig(
                **common, max_length=options.max_length, activation_checkpointing=False, loss_chunk_size=chunk
            )
            trainer = CPTTrainer(model=model, args=args, train_dataset=data, callbacks=[probe])
        trainer.train()
    return {"step_s": statistics.median(probe.times), "peak_bytes": probe.peak - probe.rss_at_reset}


def run_subprocess(variant: str, options: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--measure", variant] + [
        f"--{name}={value}" for name, value in vars(options).items() if name not in ("measure", "repeats", "bf16")
    ]
    if options.bf16:
        command.append("--bf16")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def exactness(options: argparse.Namespace) -> dict[str, float]:
    """Per-group loss against float64 and gradients against the plain path, on one batch of the benchmark."""
    model = tiny_llama(VOCAB, context=options.max_length)
    data = blocks(options.batch, options.max_length)
    batch = collate_blocks([data[i] for i in range(options.batch)])
    with tempfile.TemporaryDirectory() as output_dir:
        args = CPTConfig(
            **train_arguments(output_dir, 1, options.batch, False),
            max_length=options.max_length,
            loss_chunk_size=options.chunk,
        )
        trainer = CPTTrainer(model=model, args=args, train_dataset=data)
        model.train()
        trainer.compute_loss(model, dict(batch)).backward()
        ours = {name: p.grad.clone() for name, p in model.named_parameters()}
        group_loss = (trainer._window_nll / trainer._window_loss_tokens).tolist()
    model.zero_grad()
    model(input_ids=batch["input_ids"], labels=batch["labels"]).loss.backward()
    grad_error = max(((ours[n] - p.grad).abs().max() / p.grad.abs().max()).item() for n, p in model.named_parameters())
    with torch.no_grad():
        hidden = model.model(input_ids=batch["input_ids"]).last_hidden_state.double()
        logits = hidden[:, :-1] @ model.lm_head.weight.double().T
        token_nll = -torch.log_softmax(logits, dim=-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
        reference = [token_nll[batch["group"] == g].mean().item() for g in range(len(GROUPS))]
    loss_error = max(abs(a - b) / b for a, b in zip(group_loss, reference, strict=True))
    return {"group_loss_relative_error": loss_error, "gradient_relative_error": grad_error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024, help="loss_chunk_size of cpt and checkpoint")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the peak is reset and timing starts")
    parser.add_argument("--steps", type=int, default=4, help="timed steps")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {','.join(VARIANTS)}; plain first")
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.measure, options)))
        return

    variants = tuple(options.variants.split(","))
    if variants[0] != "plain" or not set(variants) <= set(VARIANTS):
        raise SystemExit(f"--variants is {options.variants!r}; list some of {','.join(VARIANTS)}, plain first.")
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    for repeat in range(options.repeats):
        order = variants[repeat % len(variants) :] + variants[: repeat % len(variants)]
        for variant in order:
            results[variant].append(run_subprocess(variant, options))
    checks = exactness(options)

    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; tiny Llama (hidden 64, 2 layers, "
        f"vocabulary {VOCAB:,}), {options.batch} x {options.max_length} tokens per step, "
        f"{'bf16 autocast' if options.bf16 else 'fp32'}, chunk {options.chunk}; medians of {options.repeats} "
        f"interleaved repeats ({options.steps} timed steps each)"
    )
    print()
    print("| variant | step (s) | step / plain | step / plain per repeat | peak memory per step (MB) | peak / plain |")
    print("|---|---:|---:|---|---:|---:|")
    for variant in variants:
        runs = results[variant]
        time_ratios = [run["step_s"] / plain["step_s"] for run, plain in zip(runs, results["plain"], strict=True)]
        memory_ratios = [
            run["peak_bytes"] / plain["peak_bytes"] for run, plain in zip(runs, results["plain"], strict=True)
        ]
        step = statistics.median(run["step_s"] for run in runs)
        peak_mb = statistics.median(run["peak_bytes"] for run in runs) / 2**20
        per_repeat = ", ".join(f"{ratio:.2f}" for ratio in time_ratios)
        print(
            f"| {variant} | {step:.3f} | {statistics.median(time_ratios):.3f} | {per_repeat} "
            f"| {peak_mb:,.0f} | {statistics.median(memory_ratios):.3f} |"
        )
    print()
    print(
        f"per-group loss vs float64: {checks['group_loss_relative_error']:.2e} relative (goal <= 1e-5); "
        f"gradients vs plain Trainer: {checks['gradient_relative_error']:.2e} relative to each parameter's largest "
        "gradient (goal <= 1e-5)"
    )


if __name__ == "__main__":
    main()

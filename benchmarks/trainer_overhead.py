"""Step-time overhead of CPTTrainer over a plain transformers.Trainer (goal: ratio <= 1.05).

Both train the same micro Llama (hidden 64, 2 layers) on the same packed blocks, on the CPU, in fp32.
Each round runs both, back to back inside one process (which goes first alternates), so machine noise
hits both alike; each run's first steps are discarded as warm-up. A round gives one ratio, median CPT
step / median plain step; the figure is the median of the rounds' ratios, robust to drift between rounds.

    python benchmarks/trainer_overhead.py [--rounds 8] [--steps 25] [--max_length 128] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import ClassLabel, Dataset  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from hf_cpt import CPTConfig, CPTTrainer  # noqa: E402
from hf_cpt.mixture import TopicMixtureSampler  # noqa: E402
from hf_cpt.testing import tiny_llama  # noqa: E402
from hf_cpt.trainer import collate_blocks  # noqa: E402

VOCAB = 512
CONTEXT = 1024  # the tiny model's positions: the longest --max_length it takes
GROUPS = [f"web-en/topic{i}" for i in range(11)] + ["book-en", "code-en"]


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def blocks(n: int, max_length: int) -> Dataset:
    rng = np.random.default_rng(0)
    data = Dataset.from_dict(
        {
            "input_ids": rng.integers(3, VOCAB, size=(n, max_length)).tolist(),
            "group": (np.arange(n) % len(GROUPS)).tolist(),
        }
    )
    return data.cast_column("group", ClassLabel(names=GROUPS))


def common_args(output_dir: str, steps: int, batch: int) -> dict:
    return dict(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=5,
        learning_rate=1e-4,
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )


def run_plain(data: Dataset, steps: int, batch: int) -> list[float]:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(**common_args(output_dir, steps, batch), lr_scheduler_type="constant")
        trainer = Trainer(
            model=tiny_llama(VOCAB, context=CONTEXT),
            args=args,
            train_dataset=data.remove_columns("group"),
            data_collator=collate_blocks,
            callbacks=[timer],
        )
        trainer.train()
    return timer.times


def run_cpt(data: Dataset, steps: int, batch: int, max_length: int) -> list[float]:
    timer = StepTimer()
    groups = np.asarray(data["group"])
    sampler = TopicMixtureSampler(
        groups, dict.fromkeys(GROUPS, 1.0), num_samples=steps * batch + len(GROUPS), topic_names=GROUPS
    )
    with tempfile.TemporaryDirectory() as output_dir:
        args = CPTConfig(
            **common_args(output_dir, steps, batch),
            max_length=max_length,
            activation_checkpointing=False,
            warmup_steps=2,
        )
        trainer = CPTTrainer(
            model=tiny_llama(VOCAB, context=CONTEXT),
            args=args,
            train_dataset=data,
            train_sampler=sampler,
            callbacks=[timer],
        )
        trainer.train()
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5, help="steps discarded at the start of each run")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    options = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = blocks(options.steps * options.batch * 2, options.max_length)
    plain, cpt, ratios = [], [], []
    for round_index in range(options.rounds):
        runs = {
            "plain": lambda: run_plain(data, options.steps, options.batch)[options.warmup :],
            "cpt": lambda: run_cpt(data, options.steps, options.batch, options.max_length)[options.warmup :],
        }
        order = ["plain", "cpt"] if round_index % 2 == 0 else ["cpt", "plain"]
        times = {name: runs[name]() for name in order}
        plain += times["plain"]
        cpt += times["cpt"]
        ratios.append(statistics.median(times["cpt"]) / statistics.median(times["plain"]))
    print(
        f"steps timed: {len(plain)} plain, {len(cpt)} CPTTrainer in {options.rounds} rounds "
        f"(micro Llama, {options.batch} x {options.max_length} tokens per step, {torch.get_num_threads()} threads)"
    )
    print(
        f"median step: plain Trainer {statistics.median(plain) * 1e3:.2f} ms, "
        f"CPTTrainer {statistics.median(cpt) * 1e3:.2f} ms"
    )
    print(f"per-round ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio CPTTrainer / Trainer (median of rounds): {statistics.median(ratios):.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()

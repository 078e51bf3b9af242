"""Warmup-Stable-Decay learning-rate schedule with a non-zero warm-up floor (§3.4).

`transformers.get_wsd_schedule` starts its warm-up at `min_lr_ratio`, the same ratio its decay ends
at. The paper warms up from 1e-7 to 1e-5 and never decays, so the floor of the warm-up is a separate
knob here.
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _wsd_lambda(
    step: int,
    *,
    num_warmup_steps: int,
    num_stable_steps: int,
    num_decay_steps: int,
    warmup_start_ratio: float,
    min_lr_ratio: float,
    decay_type: str,
) -> float:
    if step < num_warmup_steps:
        return warmup_start_ratio + (1.0 - warmup_start_ratio) * step / num_warmup_steps
    step -= num_warmup_steps
    if step < num_stable_steps or num_decay_steps == 0:
        return 1.0
    progress = min(1.0, (step - num_stable_steps) / num_decay_steps)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if decay_type == "cosine" else 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def get_wsd_schedule_with_floor(
    optimizer: Optimizer,
    num_training_steps: int,
    num_warmup_steps: int,
    *,
    warmup_start_ratio: float,
    decay_ratio: float = 0.0,
    min_lr_ratio: float = 0.0,
    decay_type: str = "cosine",
) -> LambdaLR:
    """Linear warm-up from `warmup_start_ratio * lr` to `lr`, constant, then an optional final decay.

    Args:
        num_training_steps: total optimizer steps.
        num_warmup_steps: steps of linear warm-up; step 0 runs at `warmup_start_ratio * lr`.
        warmup_start_ratio: the warm-up floor as a fraction of the peak lr (paper: 1e-7 / 1e-5 = 0.01).
        decay_ratio: fraction of `num_training_steps` spent in the final decay (paper: 0).
        min_lr_ratio: lr at the end of the decay, as a fraction of the peak.
        decay_type: `"linear"` or `"cosine"`.
    """
    num_warmup_steps = min(num_warmup_steps, num_training_steps)
    num_decay_steps = min(num_training_steps - num_warmup_steps, math.ceil(decay_ratio * num_training_steps))
    num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    lr_lambda = partial(
        _wsd_lambda,
        num_warmup_steps=num_warmup_steps,
        num_stable_steps=num_stable_steps,
        num_decay_steps=num_decay_steps,
        warmup_start_ratio=warmup_start_ratio,
        min_lr_ratio=min_lr_ratio,
        decay_type=decay_type,
    )
    return LambdaLR(optimizer, lr_lambda)

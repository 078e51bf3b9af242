"""The WSD schedule of §3.4: warm-up from a floor (not 0), constant plateau, optional decay."""

import math

import pytest
import torch

from hf_cpt.schedules import get_wsd_schedule_with_floor


def learning_rates(num_steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    scheduler = get_wsd_schedule_with_floor(optimizer, num_training_steps=num_steps, **kwargs)
    rates = []
    for _ in range(num_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_starts_at_the_floor_and_reaches_the_peak_then_stays():
    # Paper: 1e-7 -> 1e-5 linearly, then constant. Ratio 0.01; 4 warm-up steps.
    rates = learning_rates(8, num_warmup_steps=4, warmup_start_ratio=0.01)
    expected = [1e-7, 1e-7 + 0.25 * (1e-5 - 1e-7), 1e-7 + 0.5 * (1e-5 - 1e-7), 1e-7 + 0.75 * (1e-5 - 1e-7)]
    expected += [1e-5] * 4
    assert rates == pytest.approx(expected, rel=1e-9)


def test_linear_decay_to_min_ratio_over_the_last_quarter():
    rates = learning_rates(
        8,
        num_warmup_steps=0,
        warmup_start_ratio=0.01,
        decay_ratio=0.25,
        min_lr_ratio=0.1,
        decay_type="linear",
    )
    # 6 stable steps, then 2 decay steps: progress 0, 0.5.
    assert rates[:6] == pytest.approx([1e-5] * 6)
    assert rates[6:] == pytest.approx([1e-5, 1e-5 * (0.1 + 0.9 * 0.5)])


def test_cosine_decay_shape():
    rates = learning_rates(4, num_warmup_steps=0, warmup_start_ratio=0.01, decay_ratio=0.5, decay_type="cosine")
    assert rates[3] == pytest.approx(1e-5 * 0.5 * (1 + math.cos(math.pi * 0.5)))

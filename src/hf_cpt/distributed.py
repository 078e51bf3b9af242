"""Checks that the processes a launcher started really train together.

On a machine without GPUs, `accelerate launch --multi_gpu --num_processes 2` (or
`recipes/accelerate_configs/two_process_cpu.yaml`) and `torchrun --nproc_per_node 2` start two processes and
even join them in a torch process group, but accelerate makes them one distributed run only when they run with
CPU set: `ACCELERATE_USE_CPU=1` in the environment, `TrainingArguments(use_cpu=True)` or `Accelerator(cpu=True)`.
Otherwise each process is `DistributedType.NO`: it trains on all the data alone, and all of them write the same
output folder. No accelerate config file can ask for it (`distributed_type: MULTI_CPU` starts one process
unless MPI launches them), so the launch needs the environment variable:

    ACCELERATE_USE_CPU=1 accelerate launch --config_file recipes/accelerate_configs/two_process_cpu.yaml train.py

`check_process_group` says so when it happens; `CPTConfig` calls it (and sets `use_cpu` itself without GPUs).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState
    from transformers import TrainingArguments

logger = logging.getLogger(__name__)


def launched_world_size() -> int:
    """How many processes the launcher says it started: `$WORLD_SIZE`, else `$LOCAL_WORLD_SIZE`, else 1."""
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        value = os.environ.get(name, "").strip()
        if value:
            return int(value)
    return 1


def check_process_group(setup: TrainingArguments | Accelerator | PartialState | None = None) -> bool:
    """Warn when the launcher started several processes but accelerate runs this one alone; return False then.

    Args:
        setup: what the run uses: `TrainingArguments` (its `world_size`), an `Accelerator` or a `PartialState`
            (their `num_processes`). None reads accelerate's `PartialState`; call it after creating the
            `Accelerator` or the `TrainingArguments`, since the first `PartialState` fixes the settings
            (`cpu=...`) of every later one.

    Returns:
        True when the process count accelerate sees matches the launcher's (or only one process was launched).
    """
    launched = launched_world_size()
    if launched <= 1:
        return True
    if setup is None:
        from accelerate import PartialState

        setup = PartialState()
    processes = setup.world_size if hasattr(setup, "world_size") else setup.num_processes
    if processes == launched:
        return True
    logger.warning(
        "The launcher started %d processes, but accelerate runs this one in a group of %d: each process trains "
        "on the data by itself, and they all write the same output_dir. On a machine without GPUs, launch with "
        "ACCELERATE_USE_CPU=1 (e.g. `ACCELERATE_USE_CPU=1 accelerate launch --config_file "
        "recipes/accelerate_configs/two_process_cpu.yaml train.py`), or set TrainingArguments(use_cpu=True) or "
        "Accelerator(cpu=True).",
        launched,
        processes,
    )
    return False

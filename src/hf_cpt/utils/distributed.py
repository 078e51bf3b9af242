"""Processes under `torch.distributed`: who this one is, waiting for the others, and whether they really run together.

`torch` is imported inside the functions, so that reading the launcher's environment (`launched_world_size`,
`check_process_group` before any group exists) costs no torch import.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState
    from transformers import TrainingArguments

logger = logging.getLogger(__name__)

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size under `torch.distributed`, (0, 1) without it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised `torch.distributed` group."""
    return rank_and_world()[1] > 1


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for without a group of several)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank `src`'s `value` on every rank (a picklable object); the value itself without a group of several."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    shared = [value]
    dist.broadcast_object_list(shared, src=src)
    return shared[0]


class PositionedSampler(Protocol):
    """A sampler that knows how far it has drawn: `position` counts draws since the start, `epoch` the passes."""

    position: int
    epoch: int

    def __len__(self) -> int: ...


def next_common_position(sampler: PositionedSampler, global_batch_size: int) -> int:
    """The first position on a global-batch boundary of the epoch that no rank's sampler has drawn yet.

    DataLoaders draw ahead, each rank by a different amount; a change of what the sampler draws must apply from
    the same position on every rank, and from one no rank has drawn. A collective call under `torch.distributed`.
    """
    drawn: list[Any] = [sampler.position]
    if is_distributed():
        import torch.distributed as dist

        drawn = [None] * dist.get_world_size()
        dist.all_gather_object(drawn, sampler.position)
    start = sampler.epoch * len(sampler)
    return start + -(-(max(drawn) - start) // global_batch_size) * global_batch_size


def launched_world_size() -> int:
    """How many processes the launcher says it started: `$WORLD_SIZE`, else `$LOCAL_WORLD_SIZE`, else 1."""
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        value = os.environ.get(name, "").strip()
        if value:
            return int(value)
    return 1


def check_process_group(setup: TrainingArguments | Accelerator | PartialState | None = None) -> bool:
    """Warn when the launcher started several processes but accelerate runs this one alone; return False then.

    On a machine without GPUs, `accelerate launch --multi_gpu --num_processes 2` and `torchrun --nproc_per_node 2`
    start two processes and even join them in a torch process group, but accelerate makes them one distributed
    run only when they run with CPU set: `ACCELERATE_USE_CPU=1` in the environment, `TrainingArguments(use_cpu=True)`
    or `Accelerator(cpu=True)`. Otherwise each process is `DistributedType.NO`: it trains on all the data alone, and
    all of them write the same output folder. No accelerate config file can ask for it (`distributed_type:
    MULTI_CPU` starts one process unless MPI launches them), so the launch needs the environment variable.
    `CPTConfig` calls this check (and sets `use_cpu` itself without GPUs).

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

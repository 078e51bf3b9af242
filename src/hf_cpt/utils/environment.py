"""What this machine offers: where hf-cpt keeps its cache, and whether bf16 pays off on its hardware."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where hf-cpt keeps converted models and finished shards: `$HF_CPT_CACHE`, else `~/.cache/hf_cpt`."""
    return Path(os.environ.get("HF_CPT_CACHE", Path.home() / ".cache" / "hf_cpt"))


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 instructions (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def hardware_supports_bf16() -> bool:
    """bf16 on the accelerator when there is one, else on the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()

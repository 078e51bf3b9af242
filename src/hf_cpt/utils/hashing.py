"""Deterministic 64-bit hashing of numpy integer arrays, the same in every process and run.

Python's `hash()` is salted per process, so nothing that ranks or later runs must agree on can use it. These are
vectorised: a whole array of values (or of spans of an array) is hashed in a few numpy operations.
"""

from __future__ import annotations

import functools

import numpy as np

POLYNOMIAL_BASE = 0x9E3779B97F4A7C15
"""Base of the polynomial span hashes: odd, so invertible modulo 2**64."""
_BASE_INVERSE = pow(POLYNOMIAL_BASE, -1, 1 << 64)


def splitmix64(values: np.ndarray, *, in_place: bool = False) -> np.ndarray:
    """SplitMix64's finaliser: a bijective avalanche of 64-bit integers, every input bit spread over the whole word.

    Args:
        values: uint64 values (arithmetic wraps modulo 2**64).
        in_place: overwrite `values` (a writable uint64 array) instead of returning a new array.
    """
    mixed = values if in_place else np.array(values, dtype=np.uint64)
    mixed ^= mixed >> np.uint64(30)
    mixed *= np.uint64(0xBF58476D1CE4E5B9)
    mixed ^= mixed >> np.uint64(27)
    mixed *= np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(31)
    return mixed


@functools.lru_cache(maxsize=8)
def _powers(base: int, size: int) -> np.ndarray:
    """base**0 .. base**(size-1) modulo 2**64 (uint64 products wrap), read-only and cached.

    Callers ask for a power of two at least as long as they need, so a whole run reuses a few tables instead of
    recomputing one per chunk.
    """
    powers = np.ones(size, dtype=np.uint64)
    np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=powers[1:])
    powers.flags.writeable = False
    return powers


def span_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hashes of the spans values[start:end] (uint64 values), for many spans at once.

    A span hashes as the polynomial sum(v_j * BASE**(end-1-j)) modulo 2**64, then `splitmix64`. It is read off
    prefix sums S[i] = sum_{j<i} v_j * BASE**-j (BASE is odd, hence invertible modulo 2**64) as
    BASE**(end-1) * (S[end] - S[start]), so a span costs the same few operations however long it is. uint64
    arithmetic wraps, which is exactly arithmetic modulo 2**64.
    """
    if len(starts) == 0:
        return np.empty(0, dtype=np.uint64)
    size = 1 << (len(values) - 1).bit_length()
    prefix = np.zeros(len(values) + 1, dtype=np.uint64)
    np.cumsum(values * _powers(_BASE_INVERSE, size)[: len(values)], out=prefix[1:])
    hashes = _powers(POLYNOMIAL_BASE, size)[ends - 1]
    hashes *= prefix[ends] - prefix[starts]
    return splitmix64(hashes, in_place=True)

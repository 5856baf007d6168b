"""Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based
generator, so any element of a random tensor is a pure function of (seed, tensor, index) — drawn in any order,
on any device, with the same bits. This is the host twin of the GPU's draw kernel (kernels/draw.py): both
map the bits to a value with integer operations and one float32 multiply of an exact integer, so the two
agree to the last bit (no log or cos, whose last ulp differs between libraries).

    words = philox4x32(counter, key)            # four uint32 words per counter
    normal_values(words, std)                    # float32 ~ N(0, std^2): Irwin-Hall of 8 sixteen-bit halves
    uniform_values(words, bound)                 # float32 ~ U(-bound, bound): 24 bits of the first word

The arithmetic is written with int64 arrays and masks (products wrap in int64 and keep their low 64 bits
right), so the same functions run on numpy and torch tensors alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ROUNDS = 10
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
KEY_BUMPS = (0x9E3779B9, 0xBB67AE85)
WORD = 0xFFFFFFFF

# Irwin-Hall of the eight 16-bit halves of a block: sum s in [0, 8 * 65535], centered 2 s - 8 * 65535 an
# exact integer below 2^20; each half is uniform with variance ~1/12 of its range, so the centered sum has
# standard deviation 2 * 65536 * sqrt(8 / 12).
HALVES = 8
HALF_MAX = 0xFFFF
NORMAL_UNIT = 1.0 / (2 * 65536 * math.sqrt(HALVES / 12))
# Uniform: the top 24 bits u of the first word, centered 2 u - (2^24 - 1), odd integers of magnitude < 2^24.
UNIFORM_BITS = 24
UNIFORM_UNIT = 1.0 / (1 << UNIFORM_BITS)

Array = Any  # an int64 numpy array or torch tensor


def _mulhilo(a: Array, multiplier: int) -> tuple[Array, Array]:
    product = a * multiplier  # < 2^64: its low 64 bits survive int64's wrap
    return (product >> 32) & WORD, product & WORD


def philox4x32(counter: tuple[Array, Array, Array, Array], key: tuple[int, int]) -> tuple[Array, ...]:
    """The four output words (int64 arrays holding uint32 values) of Philox4x32-10 for each counter."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(ROUNDS):
        if round_:
            k0, k1 = (k0 + KEY_BUMPS[0]) & WORD, (k1 + KEY_BUMPS[1]) & WORD
        hi0, lo0 = _mulhilo(c0, MULTIPLIERS[0])
        hi1, lo1 = _mulhilo(c2, MULTIPLIERS[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key of a seed (0 <= seed < 2^64): its low and high words."""
    return seed & WORD, (seed >> 32) & WORD


def element_words(indices: Array, stream: int, seed: int) -> tuple[Array, ...]:
    """The block of element `indices` (int64) of tensor `stream` (its uint32 id): counter (index low, index
    high, stream, 0), keyed by the seed."""
    zero = indices & 0
    return philox4x32((indices & WORD, (indices >> 32) & WORD, zero + stream, zero), seed_key(seed))


def normal_scale(std: float) -> np.float32:
    """The float32 that turns a centered Irwin-Hall sum into N(0, std^2): the kernel's one multiply."""
    return np.float32(std * NORMAL_UNIT)


def uniform_scale(bound: float) -> np.float32:
    return np.float32(bound * UNIFORM_UNIT)


def centered_normal(words: tuple[Array, ...]) -> Array:
    total = sum((word & HALF_MAX) + (word >> 16) for word in words)
    return 2 * total - HALVES * HALF_MAX


def centered_uniform(words: tuple[Array, ...]) -> Array:
    return 2 * (words[0] >> (32 - UNIFORM_BITS)) - ((1 << UNIFORM_BITS) - 1)


def normal_values(words: tuple[Array, ...], std: float) -> np.ndarray:
    """float32 ~ N(0, std^2) (Irwin-Hall of 8: within [-4.9 std, 4.9 std]), numpy."""
    return np.asarray(centered_normal(words)).astype(np.float32) * normal_scale(std)


def uniform_values(words: tuple[Array, ...], bound: float) -> np.ndarray:
    """float32 ~ U(-bound, bound), numpy."""
    return np.asarray(centered_uniform(words)).astype(np.float32) * uniform_scale(bound)


def unit_uniform(words: tuple[Array, ...]) -> np.ndarray:
    """float64 ~ U[0, 1) in steps of 2^-24 (host-only draws that go through exp or log)."""
    return np.asarray(words[0] >> (32 - UNIFORM_BITS)).astype(np.float64) * UNIFORM_UNIT

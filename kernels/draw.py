"""draw_weights: a weight drawn on the device from the seed, bit for bit the host's (model/philox.py,
model/weight_init.py), so that a GPU session opens a model without weights in seconds instead of drawing
and uploading every tensor from the host.

    draw_weights(out (f32 | bf16) [R, C], key i32 [4])
        out[r, c] = scale * centered(philox4x32((i, i >> 32, stream, 0), (seed_lo, seed_hi))),  i = r C + c
        key = (seed_lo, seed_hi, stream, 0); rounded to nearest even once when out is bf16

One program per row, striding over it in tiles of `block` like the row kernels. `rule` is "normal" (the
Irwin-Hall sum of the block's eight 16-bit halves) or "uniform" (the first word's top 24 bits), centered to
an exact integer; `scale_bits` is the float32 that multiplies it, as its bits (so that the kernel's name
carries it exactly). A fused weight (QKV) is drawn a part at a time: the runtime views the part's rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from xdsl.dialects.builtin import MemRefType, bf16, f32, i32, i64
from xdsl.ir import Block, SSAValue

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import columns, rows
from tessera.model import philox

KEY_WORDS = 4  # seed low, seed high, stream, 0


def _u32(k: KernelBuilder, value: int) -> SSAValue:
    """A uint32 constant as MLIR's signless i32 (its two's-complement value)."""
    return k.i32(value - (1 << 32) if value >= 1 << 31 else value)


def _mulhilo(k: KernelBuilder, a: SSAValue, multiplier: int) -> tuple[SSAValue, SSAValue]:
    """(high, low) words of the 64-bit product of the uint32 `a` and `multiplier`."""
    product = k.muli(k.extui(a, i64), k.i64(multiplier))
    return k.cast(k.shrui(product, k.i64(32)), i32), k.cast(product, i32)


def philox_words(k: KernelBuilder, index: SSAValue, seed: tuple[SSAValue, SSAValue],
                 stream: SSAValue) -> tuple[SSAValue, ...]:  # fmt: skip
    """Philox4x32-10 of element `index` (i64) of `stream` under the seed's key: four i32 words."""
    c0, c1 = k.cast(index, i32), k.cast(k.shrui(index, k.i64(32)), i32)
    c2, c3 = stream, k.i32(0)
    k0, k1 = seed
    for round_ in range(philox.ROUNDS):
        if round_:
            k0, k1 = k.addi(k0, _u32(k, philox.KEY_BUMPS[0])), k.addi(k1, _u32(k, philox.KEY_BUMPS[1]))
        hi0, lo0 = _mulhilo(k, c0, philox.MULTIPLIERS[0])
        hi1, lo1 = _mulhilo(k, c2, philox.MULTIPLIERS[1])
        c0, c1, c2, c3 = k.xori(k.xori(hi1, c1), k0), lo1, k.xori(k.xori(hi0, c3), k1), lo0
    return c0, c1, c2, c3


def centered(k: KernelBuilder, rule: str, words: tuple[SSAValue, ...]) -> SSAValue:
    """The rule's exact integer (i32) from a block: model/philox.py centered_normal / centered_uniform."""
    if rule == "uniform":
        top = k.shrui(words[0], k.i32(32 - philox.UNIFORM_BITS))
        return k.subi(k.addi(top, top), k.i32((1 << philox.UNIFORM_BITS) - 1))
    assert rule == "normal", rule
    halves = k.i32(philox.HALF_MAX)
    total = k.i32(0)
    for word in words:
        total = k.addi(total, k.addi(k.andi(word, halves), k.shrui(word, k.i32(16))))
    return k.subi(k.addi(total, total), k.i32(philox.HALVES * philox.HALF_MAX))


def draw_weights(dims: Dims, tiles: Mapping[str, int]) -> Block:
    cols, block, rule = int(dims["cols"]), tiles["block"], str(dims["rule"])
    scale = float(np.array(int(dims["scale_bits"]), np.uint32).view(np.float32))
    element = bf16 if dims["out_dtype"] == "bf16" else f32
    k = KernelBuilder({"out": rows(cols, element), "key": MemRefType(i32, [KEY_WORDS])})
    out, key = k.buffers
    seed_lo, seed_hi, stream = (k.load(key, [k.index(word)]) for word in range(3))
    row_first = k.muli(k.cast(k.program_id, i64), k.i64(cols))
    lanes = k.iota(block)
    start, stop, bound = columns(k, cols, block)
    with k.loop(start, stop, k.index(block)) as chunk:
        first = k.addi(row_first, k.cast(chunk.iv, i64))

        def value(e: KernelBuilder, lane: SSAValue, first: SSAValue, k0: SSAValue, k1: SSAValue,
                  stream: SSAValue) -> SSAValue:  # fmt: skip
            words = philox_words(e, e.addi(first, e.cast(lane, i64)), (k0, k1), stream)
            return e.mulf(e.sitofp(centered(e, rule, words)), e.f32(scale))

        values = k.map([lanes, first, seed_lo, seed_hi, stream], value, f32)
        k.store(k.convert(values, element), out, [k.program_id, chunk.iv], bound)
    return k.finish()


KERNELS = {"draw_weights": draw_weights}

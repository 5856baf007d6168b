"""The per-token row kernels, written once for every target: one program per token row t, striding over the
row's features in tiles of `block` (the tile policy's choice: a few vector registers on x86, a wave's lanes
on a GPU), the last tile masked where `block` does not divide the row.

    embedding(ids i64 [T], table [V, D], out [T, D])
        out[t, :] = table[ids[t], :]   (the runtime checks ids against [0, V) before the call)
    rms_scale(h f32 [T, D], rstd f32 [T])
        rstd[t] = 1 / sqrt(sum_c h[t, c]^2 / D + eps): an RMSNorm folded into the next projection
    rmsnorm(x f32 [T, D], weight f32 [D], out (f32 | bf16) [T, D])
        out[t, c] = weight[c] * (x[t, c] * rstd[t]), rounded to nearest even once when out is bf16

Sums over a row are reassociated (partial sums per tile element, then the tile's reduction): well inside
the 1e-4 contract, and what lets every target vectorise them.
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, bf16, f32, i64
from xdsl.ir import Attribute, Block, SSAValue

from tessera.kernels.builder import INDEX, Dims, KernelBuilder

TOKENS_F32 = MemRefType(f32, [DYNAMIC_INDEX])


def rows(width: int, element: Attribute) -> MemRefType:
    """A [tokens, width] buffer."""
    return MemRefType(element, [DYNAMIC_INDEX, width])


def columns(k: KernelBuilder, width: int, block: int) -> tuple[SSAValue, SSAValue, SSAValue | None]:
    """(0, width, the mask bound or None when `block` divides `width`) of a loop over a row in tiles."""
    bound = None if width % block == 0 else k.index(width)
    return k.index(0), k.index(width), bound


def inverse_rms(k: KernelBuilder, buffer: SSAValue, width: int, block: int, epsilon: float) -> SSAValue:
    """1 / sqrt(mean(buffer[t, :]^2) + eps) of the program's row t."""
    start, stop, bound = columns(k, width, block)
    with k.loop(start, stop, k.index(block), [k.splat(k.f32(0.0), [block])]) as chunk:
        values = k.load(buffer, [k.program_id, chunk.iv], [block], bound)
        chunk.yield_(k.map([chunk.args[0], values], lambda e, acc, v: e.addf(acc, e.mulf(v, v))))
    total = k.reduce("add", chunk.results[0])
    mean = k.divf(total, k.f32(float(width)))
    return k.divf(k.f32(1.0), k.sqrt(k.addf(mean, k.f32(epsilon))))


def rms_scale(dims: Dims, tiles: Mapping[str, int]) -> Block:
    hidden = int(dims["hidden"])
    k = KernelBuilder({"h": rows(hidden, f32), "rstd": TOKENS_F32})
    h, rstd = k.buffers
    scale = inverse_rms(k, h, int(dims["hidden"]), tiles["block"], float(dims["epsilon"]))
    k.store(scale, rstd, [k.program_id])
    return k.finish()


def rmsnorm(dims: Dims, tiles: Mapping[str, int]) -> Block:
    hidden, block = int(dims["hidden"]), tiles["block"]
    out_type = rows(hidden, bf16 if dims.get("out_dtype", "f32") == "bf16" else f32)
    k = KernelBuilder({"x": rows(hidden, f32), "weight": MemRefType(f32, [hidden]), "out": out_type})
    x, weight, out = k.buffers
    scale = inverse_rms(k, x, hidden, block, float(dims["epsilon"]))
    start, stop, bound = columns(k, hidden, block)
    with k.loop(start, stop, k.index(block)) as chunk:
        values = k.load(x, [k.program_id, chunk.iv], [block], bound)
        gains = k.load(weight, [chunk.iv], [block], bound)
        normed = k.map([values, gains, scale], lambda e, v, g, s: e.mulf(g, e.mulf(v, s)))
        k.store(k.convert(normed, out_type.element_type), out, [k.program_id, chunk.iv], bound)
    return k.finish()


def embedding(dims: Dims, tiles: Mapping[str, int]) -> Block:
    hidden, block, vocab = int(dims["hidden"]), tiles["block"], int(dims["vocab"])
    k = KernelBuilder(
        {"ids": MemRefType(i64, [DYNAMIC_INDEX]), "table": MemRefType(f32, [vocab, hidden]), "out": rows(hidden, f32)}
    )
    ids, table, out = k.buffers
    row = k.convert(k.load(ids, [k.program_id]), INDEX)
    start, stop, bound = columns(k, hidden, block)
    with k.loop(start, stop, k.index(block)) as chunk:
        values = k.load(table, [row, chunk.iv], [block], bound)
        k.store(values, out, [k.program_id, chunk.iv], bound)
    return k.finish()


KERNELS = {"embedding": embedding, "rms_scale": rms_scale, "rmsnorm": rmsnorm}

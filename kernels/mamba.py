"""The Mamba-2 mixer's kernels written once (the conv, the scan and the decode step are still per-target
emitters). Notation as lowering/x86/mamba.py: H heads of P channels, G groups of state size N, I = H P,
in_proj's row zxbcdt [T, W], W = 2 I + 2 G N + H, z = its columns [0, I).

    gated_rmsnorm(zxbcdt f32 [T, W], y f32 [T, I], norm_weight f32 [I], out (f32 | bf16) [T, I])
        one program per token t, for each group g of I / G columns c:
        gated[c] = y[t, c] * silu(z[t, c]); s = sum_c gated[c]^2;
        out[t, c] = (gated[c] * rsqrt(s / (I / G) + eps)) * norm_weight[c], rounded once when out is bf16.
        The second pass recomputes gated (the same ops give the same bits) rather than storing it.
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32
from xdsl.ir import Block, SSAValue

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import rows


def gated_rmsnorm(dims: Dims, tiles: Mapping[str, int]) -> Block:
    heads, head_dim, groups, state = (int(dims[key]) for key in ("num_heads", "head_dim", "n_groups", "state_size"))
    inner, block = heads * head_dim, tiles["block"]
    width = inner // groups
    out_element = bf16 if dims.get("out_dtype", "f32") == "bf16" else f32
    k = KernelBuilder(
        {
            "zxbcdt": rows(2 * inner + 2 * groups * state + heads, f32),
            "y": rows(inner, f32),
            "norm_weight": MemRefType(f32, [inner]),
            "out": rows(inner, out_element),
        }
    )
    zxbcdt, y, norm_weight, out = k.buffers
    t = k.program_id
    with k.loop(k.index(0), k.index(inner), k.index(width)) as group:
        end = k.addi(group.iv, k.index(width))
        bound = None if width % block == 0 else end

        def gated(column: SSAValue) -> SSAValue:
            z = k.load(zxbcdt, [t, column], [block], bound)
            values = k.load(y, [t, column], [block], bound)
            return k.map([values, z], lambda e, v, g: e.mulf(v, e.silu(g)))

        with k.loop(group.iv, end, k.index(block), [k.splat(k.f32(0.0), [block])]) as chunk:
            g = gated(chunk.iv)
            chunk.yield_(k.map([chunk.args[0], g], lambda e, acc, v: e.addf(acc, e.mulf(v, v))))
        total = k.reduce("add", chunk.results[0])
        scale = k.rsqrt(k.addf(k.divf(total, k.f32(float(width))), k.f32(float(dims["epsilon"]))))
        with k.loop(group.iv, end, k.index(block)) as chunk:
            gains = k.load(norm_weight, [chunk.iv], [block], bound)
            normed = k.map([gated(chunk.iv), scale, gains], lambda e, v, s, w: e.mulf(e.mulf(v, s), w))
            k.store(k.convert(normed, out_element), out, [t, chunk.iv], bound)
    return k.finish()


KERNELS = {"gated_rmsnorm": gated_rmsnorm}

"""The MoE kernels written once (the router and the experts are still per-target emitters).

moe_combine(contrib f32 [T, K L], weights f32 [T, K], out f32 [T, L])
    out[t, c] = (out[t, c] if epilogue == "accumulate" else 0) + sum_j weights[t, j] contrib[t, j L + c],
    j = 0..K-1 in order (the residual add fused when the combine ends the layer)
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import f32
from xdsl.ir import Block

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import columns, rows


def moe_combine(dims: Dims, tiles: Mapping[str, int]) -> Block:
    top_k, latent, block = int(dims["top_k"]), int(dims["latent"]), tiles["block"]
    k = KernelBuilder({"contrib": rows(top_k * latent, f32), "weights": rows(top_k, f32), "out": rows(latent, f32)})
    contrib, weights, out = k.buffers
    t = k.program_id
    scales = [k.load(weights, [t, k.index(j)]) for j in range(top_k)]
    start, stop, bound = columns(k, latent, block)
    with k.loop(start, stop, k.index(block)) as column:
        if dims["epilogue"] == "accumulate":
            total = k.load(out, [t, column.iv], [block], bound)
        else:
            total = k.splat(k.f32(0.0), [block])
        for j, scale in enumerate(scales):
            # contrib's row holds the K expert outputs side by side; the mask bound moves with the slot.
            slot = k.addi(column.iv, k.index(j * latent))
            slot_bound = None if bound is None else k.index(j * latent + latent)
            part = k.load(contrib, [t, slot], [block], slot_bound)
            total = k.map([scale, part, total], lambda e, w, x, acc: e.addf(e.mulf(w, x), acc))
        k.store(total, out, [t, column.iv], bound)
    return k.finish()


KERNELS = {"moe_combine": moe_combine}

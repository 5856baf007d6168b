"""The MoE kernels written once (the experts are still per-target emitters).

moe_router(logits f32 [T, E], bias f32 [E], ids i64 [T, K], weights f32 [T, K])
    one program per token: score = sigmoid(logit) = 1 / (1 + exp(-logit)), choice = score + bias (HF's
    NemotronHTopkRouter, reference/moe.py route). When topk_group < n_group, each group of E / n_group experts
    is scored by the sum of its best two choices (the best alone for one-expert groups), the best topk_group
    groups are kept and the choices of the others become -inf. Then K rounds pick the best remaining choice
    (the lowest expert on ties: a stable sort's order, and expert 0 when every choice is -inf), whose choice
    becomes -inf: ids in pick order, weights = their scores / (sum + 1e-20) when norm_topk_prob (summed in
    pick order), times routed_scaling_factor. Every arg-max is a tile max, then the least position holding
    it (a min over the tile's positions), block by block with a strict `>` between blocks.

moe_combine(contrib f32 [T, K L], weights f32 [T, K], out f32 [T, L])
    out[t, c] = (out[t, c] if epilogue == "accumulate" else 0) + sum_j weights[t, j] contrib[t, j L + c],
    j = 0..K-1 in order (the residual add fused when the combine ends the layer)
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsl.dialects.builtin import MemRefType, f32, i32, i64
from xdsl.ir import Block, SSAValue

from tessera.kernels.builder import INDEX, Dims, KernelBuilder
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


NEVER = 2**31 - 1  # a position past every tile: what the min over positions ignores


def moe_router(dims: Dims, tiles: Mapping[str, int]) -> Block:
    experts, top_k, block = int(dims["num_experts"]), int(dims["top_k"]), tiles["block"]
    groups, kept_groups = int(dims["n_group"]), int(dims["topk_group"])
    per_group = experts // groups
    k = KernelBuilder(
        {
            "logits": rows(experts, f32),
            "bias": MemRefType(f32, [experts]),
            "ids": rows(top_k, i64),
            "weights": rows(top_k, f32),
        }
    )
    logits, bias, ids, weights = k.buffers
    t = k.program_id
    minus_inf = k.f32(float("-inf"))
    positions = k.iota(block)

    def positions_from(start: SSAValue) -> SSAValue:
        """The buffer positions (i32) of a tile loaded at `start`."""
        return k.map([positions, k.cast(start, i32)], lambda e, p, first: e.addi(p, first))

    def best(buffer: SSAValue, lo: SSAValue, hi: SSAValue, excluded: SSAValue | None = None) -> list[SSAValue]:
        """(the largest of buffer[lo:hi] but position `excluded`, its first position as i32). Tiles start
        at lo + j block and may reach past hi: the scratch buffers hold a block more than they use."""
        end = k.cast(hi, i32)
        with k.loop(lo, hi, k.index(block), [minus_inf, k.cast(lo, i32)]) as piece:
            at = positions_from(piece.iv)
            values = k.load(buffer, [piece.iv], [block])

            def live(e: KernelBuilder, v: SSAValue, a: SSAValue, stop: SSAValue, *excluded_at: SSAValue) -> SSAValue:
                inside = e.cmpi("slt", a, stop)
                if excluded_at:
                    inside = e.andi(inside, e.cmpi("ne", a, excluded_at[0]))
                return e.select(inside, v, e.f32(float("-inf")))

            values = k.map([values, at, end, *([excluded] if excluded is not None else [])], live)
            top = k.reduce("max", values)
            holders = k.map([values, at, top], lambda e, v, a, m: e.select(e.cmpf("oeq", v, m), a, e.i32(NEVER)))
            where = k.reduce("min", holders)
            better = k.cmpf("ogt", top, piece.args[0])
            piece.yield_(k.select(better, top, piece.args[0]), k.select(better, where, piece.args[1]))
        return piece.results

    # Scores and choices, staged for the rounds of arg-max.
    scores, choice = k.alloc("scores", [experts + block], f32), k.alloc("choice", [experts + block], f32)
    start, stop, bound = columns(k, experts, block)
    with k.loop(start, stop, k.index(block)) as column:
        logit = k.load(logits, [t, column.iv], [block], bound)
        score = k.map([logit], lambda e, x: e.divf(e.f32(1.0), e.addf(e.f32(1.0), e.exp(e.negf(x)))))
        k.store(score, scores, [column.iv])
        k.store(
            k.map([score, k.load(bias, [column.iv], [block], bound)], lambda e, s, b: e.addf(s, b)), choice, [column.iv]
        )

    if kept_groups < groups:
        group_scores = k.alloc("group_scores", [groups + block], f32)
        kept = k.alloc("kept", [groups], f32)
        width = k.index(per_group)
        with k.loop(k.index(0), k.index(groups), k.index(1)) as group:
            lo = k.muli(group.iv, width)
            hi = k.addi(lo, width)
            top, where = best(choice, lo, hi)
            total = k.addf(top, best(choice, lo, hi, where)[0]) if per_group > 1 else top
            k.store(total, group_scores, [group.iv])
            k.store(k.f32(0.0), kept, [group.iv])
        with k.loop(k.index(0), k.index(kept_groups), k.index(1)):
            g = k.cast(best(group_scores, k.index(0), k.index(groups))[1], INDEX)
            k.store(k.f32(1.0), kept, [g])
            k.store(minus_inf, group_scores, [g])
        with k.loop(k.index(0), k.index(groups), k.index(1)) as group:
            lo = k.muli(group.iv, width)
            hi = k.addi(lo, width)
            dropped = k.cmpf("oeq", k.load(kept, [group.iv]), k.f32(0.0))
            end = k.cast(hi, i32)
            with k.loop(lo, hi, k.index(block)) as piece:
                at = positions_from(piece.iv)
                values = k.load(choice, [piece.iv], [block])
                # A tile reaching past the group keeps the next group's choices as they are.
                masked = k.map(
                    [values, at, dropped, end],
                    lambda e, v, a, d, stop: e.select(e.andi(d, e.cmpi("slt", a, stop)), e.f32(float("-inf")), v),
                )
                k.store(masked, choice, [piece.iv])

    picked = k.alloc("picked", [top_k], f32)
    with k.loop(k.index(0), k.index(top_k), k.index(1), [k.f32(0.0)]) as slot:
        expert = best(choice, k.index(0), k.index(experts))[1]
        x = k.cast(expert, INDEX)
        k.store(minus_inf, choice, [x])
        score = k.load(scores, [x])
        k.store(k.cast(expert, i64), ids, [t, slot.iv])
        k.store(score, picked, [slot.iv])
        slot.yield_(k.addf(slot.args[0], score))
    normaliser = k.addf(slot.results[0], k.f32(1e-20)) if int(dims["norm_topk_prob"]) else None
    scaling = k.f32(float(dims["routed_scaling_factor"]))
    with k.loop(k.index(0), k.index(top_k), k.index(1)) as slot:
        weight = k.load(picked, [slot.iv])
        if normaliser is not None:
            weight = k.divf(weight, normaliser)
        k.store(k.mulf(weight, scaling), weights, [t, slot.iv])
    return k.finish()


KERNELS = {"moe_router": moe_router, "moe_combine": moe_combine}

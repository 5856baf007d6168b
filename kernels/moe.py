"""The MoE kernels written once (the experts' GPU blocking in kernels/moe_blocks.py).

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

moe_experts(x (f32 | bf16) [T, L], ids i64 [T, K], up [E, F, L], down [E, L, F], contrib f32 [T, K L])
    contrib[t, j L:(j+1) L] = down[e] relu(up[e] x[t])^2 for e = ids[t, j], in f32 (bf16 widened exactly).
    Expert-major, one program per expert e, so that each expert's weights stream once per group of its
    slots (not once per token): the ids are scanned token by token, the slots s = t K + j routed to e
    listed; whenever the list may not take another token's K (or the tokens end), the group is run —
        gather   xg[r, :] = x[slot r's token, :]                          (f32, a main-memory scratch)
        up       hid = relu2(xg upᵀ)     the GEMM of kernels/gemm.py, over up's panels, into hid [group, F']
        down     yo = hid downᵀ          likewise into yo [group, L']
        scatter  contrib[t, j L:(j+1) L] = yo[r, :L] for each listed slot r = (t, j)
    F', L' are F, L rounded up to whole panels (the GEMMs store whole panels; what lies past F is relu2 of
    the zero padding, and the down GEMM reads only F columns). up and down are read packed in panels as the
    GEMM reads its weight, one stack per expert (`expert_weight_layout`). No slot routed to another expert
    (or to no expert: ids outside [0, E)) is read or written, so experts may run on any threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32, i32, i64
from xdsl.ir import Block, SSAValue

from tessera.kernels.builder import INDEX, Dims, KernelBuilder
from tessera.kernels.gemm import Gemm, GemmOperands
from tessera.kernels.moe_blocks import block_experts, route
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


def expert_weight_layout(role: str) -> Callable[[Dims, Mapping[str, int]], MemRefType]:
    """The packed stack moe_experts reads for `role` ("up": [E, F, L]; "down": [E, L, F]): each expert's
    matrix in panels of nr output columns, [E, ceil(N / nr), K, nr], zero past N; a GPU's, the stack itself."""

    def layout(dims: Dims, tiles: Mapping[str, int]) -> MemRefType:
        ffn, latent = int(dims["ffn"]), int(dims["latent"])
        n, k = (ffn, latent) if role == "up" else (latent, ffn)
        element = bf16 if tiles.get("weight_bf16", 0) else f32
        if "rows" in tiles:  # a GPU's block experts read the stack in its own row-major layout
            return MemRefType(element, [int(dims["num_experts"]), n, k])
        nr = tiles["nr"]
        return MemRefType(element, [int(dims["num_experts"]), -(-n // nr), k, nr])

    return layout


def _whole_panels(size: int, tiles: Mapping[str, int]) -> int:
    return -(-size // tiles["nr"]) * tiles["nr"]


def moe_experts(dims: Dims, tiles: Mapping[str, int]) -> Block:
    if "rows" in tiles:  # a GPU's: kernels/moe_blocks.py
        return _gpu_experts(dims, tiles)
    top_k, latent, ffn = int(dims["top_k"]), int(dims["latent"]), int(dims["ffn"])
    group, block = tiles["group"], tiles["block"]
    if group < top_k:
        raise ValueError(f"moe_experts: a group of {group} slots cannot take one token's {top_k}")
    k = KernelBuilder(_experts_buffers(dims, tiles))
    x, ids, up, down, contrib = k.buffers
    expert = k.program_id
    slots = k.alloc("slots", [group], i32)
    xg = k.alloc("xg", [group, latent], f32, space="global")
    hid = k.alloc("hid", [group, _whole_panels(ffn, tiles)], f32, space="global")
    yo = k.alloc("yo", [group, _whole_panels(latent, tiles)], f32, space="global")
    start, stop, bound = columns(k, latent, block)

    def slot_token(r: SSAValue) -> tuple[SSAValue, SSAValue]:
        """(token, choice j) of listed slot r."""
        s = k.cast(k.load(slots, [r]), INDEX)
        t = k.divsi(s, k.index(top_k))
        return t, k.subi(s, k.muli(t, k.index(top_k)))

    def run_group(count: SSAValue) -> None:
        with k.loop(k.index(0), count, k.index(1)) as row:
            t = slot_token(row.iv)[0]
            with k.loop(start, stop, k.index(block)) as column:
                values = k.convert(k.load(x, [t, column.iv], [block], bound), f32)
                k.store(values, xg, [row.iv, column.iv], bound)
        products = (
            (up, xg, hid, ffn, latent, "relu2", tiles["up_kc"]),
            (down, hid, yo, latent, ffn, "store", tiles["down_kc"]),
        )
        for weight, lhs, out, n, k_size, epilogue, kc in products:
            with k.loop(k.index(0), k.index(-(-n // tiles["nr"])), k.index(1)) as panel:
                operands = GemmOperands(lhs, weight, out, w_at=(expert,))
                Gemm(k, n, k_size, epilogue, {**tiles, "kc": kc}, operands, panel.iv).rows(k.index(0), count)
        with k.loop(k.index(0), count, k.index(1)) as row:
            t, j = slot_token(row.iv)
            first = k.muli(j, k.index(latent))
            slot_bound = None if bound is None else k.addi(first, k.index(latent))
            with k.loop(start, stop, k.index(block)) as column:
                values = k.load(yo, [row.iv, column.iv], [block])
                k.store(values, contrib, [t, k.addi(first, column.iv)], slot_bound)

    route(k, ids, slots, expert, k.index(0), k.size(ids), top_k, run_group)
    return k.finish()


def _gpu_experts(dims: Dims, tiles: Mapping[str, int]) -> Block:
    k = KernelBuilder(_experts_buffers(dims, tiles), token_blocks=True)
    block_experts(k, dims, tiles)
    return k.finish()


def _experts_buffers(dims: Dims, tiles: Mapping[str, int]) -> dict[str, MemRefType]:
    """moe_experts' launch operands: x, ids, the up and down stacks (in the tiles' layout), contrib."""
    top_k, latent = int(dims["top_k"]), int(dims["latent"])
    return {
        "x": rows(latent, bf16 if str(dims.get("x_dtype", "f32")) == "bf16" else f32),
        "ids": rows(top_k, i64),
        "up": expert_weight_layout("up")(dims, tiles),
        "down": expert_weight_layout("down")(dims, tiles),
        "contrib": rows(top_k * latent, f32),
    }


KERNELS = {"moe_router": moe_router, "moe_combine": moe_combine, "moe_experts": moe_experts}
# Launch buffers the runtime packs once at load into the layout the kernel reads (program.json records it).
PACKED = {"moe_experts": {"up": expert_weight_layout("up"), "down": expert_weight_layout("down")}}

"""The MoE experts as a GPU workgroup runs them (kernels/moe.py's semantics; that module's moe_experts builds this
body for tiles with `rows`): one program per (expert e, group of `group` tokens) — the grid's experts by the
call's token groups (tessera.tile.kernel's token_block) — with the weights in their own row-major layouts
(up [E, F, L], down [E, L, F], converted once at load to the matrix element):

    list the group's slots s = t K + j routed to e, token by token; whenever the list may not take another
    token's K (or the group ends), for its `rows` slots r (rows past the count are not stored):
      for each chunk of ffn (`chunk` columns, as many as the scratchpad holds):
        up     h[r, f] = relu2(sum over L of x[t_r, k] up[e, f, k])   K blocks of x rows gathered into a
                                                                      scratch, then mma; h kept as the
                                                                      matrix element in a scratch [rows, chunk]
        down   o[r, l] = sum over the chunk of h[r, f] down[e, l, f]   mma per L block, into a scratch
        scatter contrib[t_r, j_r L + l] = o[r, l]   (the first chunk), += o[r, l] (the others)
    h's rounding to bf16 is the down product's operand rounding (as the reference's); sums are f32.

Ffn past F and latent past L read as zeros (bounded loads), and outputs past L are not stored; no slot routed
to another expert (or to no expert) is read or written, so programs run in any order."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xdsl.dialects.builtin import bf16, f32, i32, i64
from xdsl.ir import SSAValue

from tessera.kernels.builder import INDEX, KernelBuilder


def route(k: KernelBuilder, ids: SSAValue, slots: SSAValue, expert: SSAValue, first: SSAValue, end: SSAValue,
          top_k: int, run: Callable[[SSAValue], None]) -> None:  # fmt: skip
    """List the slots s = t K + j of tokens [first, end) routed to `expert` into `slots`, token by token, and
    run(count) whenever the list may not take another token's K (or the tokens end)."""
    capacity = slots.type.get_shape()[0]  # type: ignore[attr-defined]
    last = k.subi(end, k.index(1))
    mine = k.cast(expert, i64)
    with k.loop(first, end, k.index(1), [k.index(0)]) as token:
        count = token.args[0]
        for j in range(top_k):
            # Listed unconditionally, counted only when routed here: the next slot overwrites one that is not.
            slot = k.addi(k.muli(token.iv, k.index(top_k)), k.index(j))
            k.store(k.cast(slot, i32), slots, [count])
            routed = k.cmpi("eq", k.load(ids, [token.iv, k.index(j)]), mine)
            count = k.select(routed, k.addi(count, k.index(1)), count)
        full = k.cmpi("sgt", count, k.index(capacity - top_k))
        ends = k.andi(k.cmpi("eq", token.iv, last), k.cmpi("sgt", count, k.index(0)))
        flush = k.ori(full, ends)
        with k.when(flush):
            run(count)
        token.yield_(k.select(flush, k.index(0), count))


def _relu2(e: KernelBuilder, v: SSAValue) -> SSAValue:
    positive = e.maximumf(v, e.f32(0.0))
    return e.mulf(positive, positive)


def block_experts(k: KernelBuilder, dims: Mapping[str, int | float | str], tiles: Mapping[str, int]) -> None:
    """The body over k.buffers x, ids, up, down, contrib (kernels/moe.py lists them)."""
    top_k, latent, ffn = int(dims["top_k"]), int(dims["latent"]), int(dims["ffn"])
    rows, group, chunk = tiles["rows"], tiles["group"], tiles["chunk"]
    block_k, block_f, block_l = tiles["block_k"], tiles["block_f"], tiles["block_l"]
    element = bf16 if tiles.get("weight_bf16", 0) else f32
    x, ids, up, down, contrib = k.buffers
    expert = k.program_id
    slots = k.alloc("slots", [rows], i32)
    gathered = k.alloc("xg", [rows, block_k], element)
    hidden = k.alloc("hs", [rows, chunk], element)
    out = k.alloc("os", [rows, block_l], f32)

    def slot_token(r: SSAValue) -> tuple[SSAValue, SSAValue]:
        """(token, choice j) of listed slot r."""
        s = k.cast(k.load(slots, [r]), INDEX)
        t = k.divsi(s, k.index(top_k))
        return t, k.subi(s, k.muli(t, k.index(top_k)))

    def up_chunk(count: SSAValue, first_f: SSAValue) -> None:
        """hidden = relu2 of the listed rows' x times the chunk's up rows, as the matrix element."""
        k_bound = k.index(latent) if latent % block_k else None
        with k.loop(k.index(0), k.index(chunk), k.index(block_f)) as f_block:
            zero = k.splat(k.f32(0.0), [rows, block_f])
            with k.loop(k.index(0), k.index(latent), k.index(block_k), [zero]) as step:
                with k.loop(k.index(0), count, k.index(1)) as row:
                    values = k.load(x, [slot_token(row.iv)[0], step.iv], [block_k], k_bound)
                    k.store(k.convert(values, element), gathered, [row.iv, k.index(0)])
                a = k.load(gathered, [k.index(0), k.index(0)], [rows, block_k])
                at = [expert, k.addi(first_f, f_block.iv), step.iv]
                b = k.load(up, at, [block_f, block_k], {0: k.index(ffn), 1: k.index(latent)})
                step.yield_(k.mma(a, b, step.args[0], rhs_transposed=True))
            k.store(k.convert(k.map([step.results[0]], _relu2), element), hidden, [k.index(0), f_block.iv])

    def down_chunk(count: SSAValue, first_f: SSAValue) -> None:
        """contrib rows = (the first chunk) or += (the others) the chunk's hidden times its down columns."""
        first = k.cmpi("eq", first_f, k.index(0))
        with k.loop(k.index(0), k.index(latent), k.index(block_l)) as column:
            zero = k.splat(k.f32(0.0), [rows, block_l])
            with k.loop(k.index(0), k.index(chunk), k.index(block_f), [zero]) as step:
                a = k.load(hidden, [k.index(0), step.iv], [rows, block_f])
                at = [expert, column.iv, k.addi(first_f, step.iv)]
                b = k.load(down, at, [block_l, block_f], {0: k.index(latent), 1: k.index(ffn)})
                step.yield_(k.mma(a, b, step.args[0], rhs_transposed=True))
            k.store(step.results[0], out, [k.index(0), k.index(0)])
            with k.loop(k.index(0), count, k.index(1)) as row:
                t, j = slot_token(row.iv)
                start = k.muli(j, k.index(latent))
                place, end = [t, k.addi(start, column.iv)], k.addi(start, k.index(latent))
                part = k.load(out, [row.iv, k.index(0)], [block_l])
                if ffn > chunk:  # contrib is read anyway in the first chunk: what it holds is not used
                    previous = k.load(contrib, place, [block_l], end)
                    part = k.map([part, previous, first], lambda e, p, c, starts: e.select(starts, p, e.addf(p, c)))
                k.store(part, contrib, place, end)

    def run(count: SSAValue) -> None:
        with k.loop(k.index(0), k.index(ffn), k.index(chunk)) as piece:
            up_chunk(count, piece.iv)
            down_chunk(count, piece.iv)

    tokens = k.size(ids)
    first_token = k.muli(k.token_block_id, k.index(group))
    end = k.minsi(k.addi(first_token, k.index(group)), tokens)
    route(k, ids, slots, expert, first_token, end, top_k, run)

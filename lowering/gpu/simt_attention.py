"""The SIMT attention kernel (no matrix instruction): causal grouped-query attention of this call's queries
over the KV cache, one warp per (query token, query head), flash-decoding style — what Hopper runs until its
WGMMA attention lands, and the shape of a decode step on any GPU. Semantics and operands are
lowering/rocdl/attention.py's: qkv [tokens, (Hq + 2 Hkv) D] f32 (only the queries are read), k_cache and
v_cache [max_seq_len, Hkv, D] (f32 | bf16; rows [0, position + tokens) hold this call's keys already:
kv_append ran first), out [tokens, Hq D] (f32 | bf16), rounded once when bf16.

Workgroup (t, h) is one wave; lane l owns d = l, l + W, ... (W the wave size; ceil(D / W) slots, the last
masked): it holds q[t, h D + d] * D^-0.5 and its share of the output accumulator in registers, and walks the
keys s = 0 .. position + t of kv head g = h / (Hq / Hkv) in order: score = the wave's butterfly sum of
q_d K[s, g, d], then the online softmax m' = max(m, score), alpha = exp(m - m'), p = exp(score - m'),
l' = l alpha + p, acc_d' = acc_d alpha + p V[s, g, d] (m starts at -inf and the first key is visible to
every query, so alpha = exp(-inf) = 0 there, and m is finite from then on). out = acc / l. Every operation
is f32; K and V widened exactly from bf16.
"""

from __future__ import annotations

from tessera.lowering.gpu.simt import simt_builder
from tessera.lowering.rocdl.kernel_text import GpuKernel, Grid, KernelInfo

NEG_INF = "0xFF800000"


def emit_attention_simt(info: KernelInfo) -> GpuKernel:
    heads, kv_heads, head_dim = info.dim("num_heads"), info.dim("num_kv_heads"), info.dim("head_dim")
    cache_dtype = str(info.dims.get("cache_dtype", "f32"))
    out_dtype = str(info.dims.get("out_dtype", "f32"))
    group = heads // kv_heads
    b = simt_builder(info, ["qkv", "k_cache", "v_cache", "out"])
    wave = b.wave_size
    assert b.threads == wave, f"{info.name}: one wave per (token, head)"
    lane, token, head = b.thread_id(), b.block_id("x"), b.block_id("y")
    t, h = b.to_i32(token), b.to_i32(head)
    lane32 = b.to_i32(lane)
    slots: list[tuple[str, str | None]] = []  # (d, in range) per register slot; None: always in range
    for r in range(-(-head_dim // wave)):
        d = lane32 if r == 0 else b.add(lane32, b.i32(wave * r), "i32")
        slots.append((d, None if wave * (r + 1) <= head_dim else b.lt(d, b.i32(head_dim), "i32")))

    def clamp(d: str, inside: str | None) -> str:
        return d if inside is None else b.let("s", f"arith.select {inside}, {d}, {b.i32(0)} : i32")

    def masked(value: str, inside: str | None) -> str:
        return value if inside is None else b.let("s", f"arith.select {inside}, {value}, {b.f32(0.0)} : f32")

    scale = b.f32(head_dim**-0.5)
    q_base = b.add(b.mul(t, b.i32((heads + 2 * kv_heads) * head_dim), "i32"), b.mul(h, b.i32(head_dim), "i32"), "i32")
    queries = [masked(b.fmul(b.gload("qkv", b.add(q_base, clamp(d, inside), "i32")), scale), inside)
               for d, inside in slots]  # fmt: skip
    kv_head = b.div(h, b.i32(group), "i32")
    keys = b.to_index(b.add(b.add(b.position, t, "i32"), b.i32(1), "i32"))
    carried = [(b.const(NEG_INF, "f32"), "f32"), (b.f32(0.0), "f32")] + [(b.f32(0.0), "f32")] * len(slots)
    with b.loop(b.index(0), keys, b.index(1), carried) as key:
        running_max, running_sum, accs = key.args[0], key.args[1], key.args[2:]
        row = b.mul(b.add(b.mul(b.to_i32(key.iv), b.i32(kv_heads), "i32"), kv_head, "i32"), b.i32(head_dim), "i32")
        at = [b.add(row, clamp(d, inside), "i32") for d, inside in slots]
        partial = b.f32(0.0)
        for q, offset, (_, inside) in zip(queries, at, slots, strict=True):
            partial = b.fadd(partial, b.fmul(q, masked(b.gload("k_cache", offset, cache_dtype), inside)))
        score = b.wave_reduce(partial)
        new_max = b.fmax(running_max, score)
        alpha = b.math("exp", b.let("f", f"arith.subf {running_max}, {new_max} : f32"))
        p = b.math("exp", b.let("f", f"arith.subf {score}, {new_max} : f32"))
        new_sum = b.fadd(b.fmul(running_sum, alpha), p)
        updated = []
        for acc, offset, (_, inside) in zip(accs, at, slots, strict=True):
            value = masked(b.gload("v_cache", offset, cache_dtype), inside)
            updated.append(b.fadd(b.fmul(acc, alpha), b.fmul(p, value)))
        key.yield_(new_max, new_sum, *updated)
    total = key.results[1]
    out_base = b.add(b.mul(t, b.i32(heads * head_dim), "i32"), b.mul(h, b.i32(head_dim), "i32"), "i32")
    for acc, (d, inside) in zip(key.results[2:], slots, strict=True):

        def store(acc: str = acc, d: str = d) -> None:
            value = b.let("f", f"arith.divf {acc}, {total} : f32")
            b.gstore(value, "out", b.add(out_base, d, "i32"), out_dtype)

        if inside is None:
            store()
        else:
            with b.if_else(inside):
                store()
    return GpuKernel(info.name, b.render(), b.threads, Grid(x=("tokens", 1), y=(heads, 1)), 0)

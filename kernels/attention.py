"""The attention kernels written once.

attention(qkv f32 [T, (Hq + 2 Hkv) D], k_cache, v_cache (f32 | bf16) [S, Hkv, D], out (f32 | bf16) [T, Hq D];
          position)
    causal grouped-query attention of this call's queries over the KV cache (HF's NemotronHAttention: no
    RoPE, no QK norm, no bias; kv_append ran first, so rows [0, position + T) of the caches hold every key
    this call's queries see). As a GPU runs it (`query_rows` chosen): one program per query head h (kv head
    g = h / (Hq / Hkv)) and block of R = query_rows tokens t0.. (a grid over heads by the call's token
    blocks); token t sits at position q = position + t. The program walks the keys [0, position + min(t0 + R,
    T)) in blocks of block_k with the online softmax, a row per query:
        s = (Q D^-0.5) · K_blockᵀ              an [R, block_k] mma with K given by rows (rhs_transposed)
        s = -inf where the key is past the row's q (a block's keys past the cache's rows read as 0, then
                                               masked)
        m' = max(m, max s), alpha = exp(m - m'), p = exp(s - m'), l' = l alpha + sum p   (per row)
        acc' = acc alpha + p · V_block         (m starts at -inf: key 0 is in every query's first block, so
                                               alpha = exp(-inf) = 0 there and m is finite from then on)
    out[t, h D : (h + 1) D] = acc / l, rounded once when out is bf16; K and V widened exactly from bf16, all
    arithmetic f32 (so the GPUs' matrix instructions are their f32 ones) — unless the tiles ask for
    `bf16_operands` (Hopper under bf16: its WGMMA): then the products' operands are bf16, the scaled queries,
    each block's probabilities and an f32 cache's K and V rounded once to nearest even, sums f32
    (FlashAttention's numerics). The K and V blocks are [block_k, D]
    tiles of the cache along its dimensions 0 and 2, masked along their rows at the block's last key; the
    queries past the call's tokens read as 0 and are not stored.

attention with tiles for a core's vectors (`block_q` chosen: x86), a ranged body over query heads [first, end)
    the same result as above, shaped for registers and caches rather than lanes: the query heads of the range
    are visited a kv group at a time, and a group's selected heads times a block of block_q tokens are the
    rows of one tile, so that each K / V block serves them all. Per query block: the scaled queries, the
    output rows, the running max, sum and rescale factor live in scratch buffers; per key block up to the
    block's causal end (later blocks are never visited):
        scores [rows, block_k]    with at least dot_rows rows: the GEMM of kernels/gemm.py (register blocks
                                  of mr rows, a column of q times a row of Kᵀ per step) over the K block
                                  transposed into a scratch (16 x 16 blocks, the odd last keys one by one);
                                  with fewer (decode): per row, 16 keys at a time as dot products
        the online softmax per row, vectorised along the keys (keys past a row's position -> -inf)
        acc [rows, D] = acc alpha + p · V_block in register blocks of mr rows x nr columns, a column of p
                                  times a row of V per key
    and out = acc / l. Scratch columns past a block's keys hold stale values: the softmax's select never lets
    them through, and p · V runs over the block's keys only.

kv_append(qkv f32 [T, (Hq + 2 Hkv) D], k_cache, v_cache (f32 | bf16) [S, Hkv, D]; position)
    one program per token t, for every kv head g:
    k_cache[position + t, g, :] = qkv[t, (Hq + g) D : (Hq + g + 1) D]
    v_cache[position + t, g, :] = qkv[t, (Hq + Hkv + g) D : (Hq + Hkv + g + 1) D]
    (rounded to nearest even once when the cache is bf16; the runtime keeps position + T <= S)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32, i32
from xdsl.ir import Attribute, Block, SSAValue

from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.gemm import Gemm, GemmOperands, row_blocks, stripe_width
from tessera.kernels.rows import columns, rows


def _cache_types(dims: Dims) -> tuple[MemRefType, Attribute, Attribute]:
    """The KV cache's type, its element type and the output's element type."""
    kv_heads, head_dim = int(dims["num_kv_heads"]), int(dims["head_dim"])
    cache_element = bf16 if dims.get("cache_dtype", "f32") == "bf16" else f32
    out_element = bf16 if dims.get("out_dtype", "f32") == "bf16" else f32
    return MemRefType(cache_element, [int(dims["max_seq_len"]), kv_heads, head_dim]), cache_element, out_element


def kv_append(dims: Dims, tiles: Mapping[str, int]) -> Block:
    heads, kv_heads, head_dim = (int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim"))
    block = tiles["block"]
    cache, cache_element, _ = _cache_types(dims)
    qkv_type = rows((heads + 2 * kv_heads) * head_dim, f32)
    k = KernelBuilder({"qkv": qkv_type, "k_cache": cache, "v_cache": cache}, scalars=("position",))
    qkv, k_cache, v_cache = k.buffers
    t = k.program_id
    cache_row = k.addi(k.scalars["position"], t)
    start, stop, bound = columns(k, head_dim, block)
    for g in range(kv_heads):
        for target, first_head in ((k_cache, heads), (v_cache, heads + kv_heads)):
            base = (first_head + g) * head_dim
            with k.loop(start, stop, k.index(block)) as chunk:
                column = k.addi(chunk.iv, k.index(base))
                source_bound = None if bound is None else k.index(base + head_dim)
                values = k.load(qkv, [t, column], [block], source_bound)
                k.store(k.convert(values, cache_element), target, [cache_row, k.index(g), chunk.iv], bound)
    return k.finish()


def attention(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """The GPU form of the module docstring."""
    heads, kv_heads, head_dim = (int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim"))
    group, query_rows, block = heads // kv_heads, tiles["query_rows"], tiles["block_k"]
    _, _, out_element = _cache_types(dims)
    k = KernelBuilder(_attention_buffers(dims), scalars=("position",), token_blocks=True)
    qkv, k_cache, v_cache, out = k.buffers
    head, first = k.program_id, k.muli(k.token_block_id, k.index(query_rows))
    tokens, zero, position = k.size(qkv), k.index(0), k.scalars["position"]
    g, column = k.divsi(head, k.index(group)), k.muli(head, k.index(head_dim))
    seen = k.addi(position, k.minsi(k.addi(first, k.index(query_rows)), tokens))  # keys [0, seen)
    scale, minus_infinity = head_dim**-0.5, float("-inf")
    query = k.load(qkv, [first, column], [query_rows, head_dim], {0: tokens})
    scaled = k.map([query], lambda e, v: e.mulf(v, e.f32(scale)))
    bf16_operands = bool(tiles.get("bf16_operands", 0))
    operand = bf16 if bf16_operands else f32
    if bf16_operands:  # a tile value: the lowering stages it once for every key block's product
        bf16_queries = k.convert(scaled, bf16)
    else:
        queries = k.alloc("q", [query_rows, head_dim], f32)  # scaled once; every key block's product reads it
        k.store(scaled, queries, [zero, zero])
    query_rowsat = k.broadcast(k.iota(query_rows), 1, block)  # row i of a block
    keys_at = k.broadcast(k.iota(block), 0, query_rows)  # key j of a block
    carried = [k.splat(k.f32(minus_infinity), [query_rows]), k.splat(k.f32(0.0), [query_rows]),
               k.splat(k.f32(0.0), [query_rows, head_dim])]  # fmt: skip
    with k.loop(zero, seen, k.index(block), carried) as keys:
        peak, total, acc = keys.args
        at = [keys.iv, g, zero]
        key_rows = k.convert(k.load(k_cache, at, [block, head_dim], {0: seen}, axes=(0, 2)), operand)
        query = bf16_queries if bf16_operands else k.load(queries, [zero, zero], [query_rows, head_dim])
        scores = k.mma(query, key_rows, k.splat(k.f32(0.0), [query_rows, block]), rhs_transposed=True)
        reach = k.cast(k.subi(k.addi(position, first), keys.iv), i32)  # key j of row i is visible: j - i <= reach
        scores = k.map(
            [scores, query_rowsat, keys_at, reach],
            lambda e, s, i, j, limit: e.select(e.cmpi("sle", e.subi(j, i), limit), s, e.f32(minus_infinity)),
        )
        new_peak = k.map([peak, k.reduce("max", scores, axis=1)], lambda e, m, b: e.maximumf(m, b))
        alpha = k.map([peak, new_peak], lambda e, m, n: e.exp(e.subf(m, n)))
        probabilities = k.map([scores, k.broadcast(new_peak, 1, block)], lambda e, s, m: e.exp(e.subf(s, m)))
        total = k.map(
            [total, alpha, k.reduce("add", probabilities, axis=1)], lambda e, z, a, p: e.addf(e.mulf(z, a), p)
        )
        value_rows = k.convert(k.load(v_cache, at, [block, head_dim], {0: seen}, axes=(0, 2)), operand)
        rescaled = k.map([acc, k.broadcast(alpha, 1, head_dim)], lambda e, x, a: e.mulf(x, a))
        keys.yield_(new_peak, total, k.mma(k.convert(probabilities, operand), value_rows, rescaled))
    _, total, acc = keys.results
    result = k.map([acc, k.broadcast(total, 1, head_dim)], lambda e, x, z: e.divf(x, z))
    k.store(k.convert(result, out_element), out, [first, column], {0: tokens})
    return k.finish()


def _attention_buffers(dims: Dims) -> dict[str, MemRefType]:
    """Both attention forms' launch buffers: qkv, the two caches and out."""
    heads, kv_heads, head_dim = (int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim"))
    cache, _, out_element = _cache_types(dims)
    qkv = rows((heads + 2 * kv_heads) * head_dim, f32)
    return {"qkv": qkv, "k_cache": cache, "v_cache": cache, "out": rows(heads * head_dim, out_element)}


class RowBlockedAttention:
    """attention as the module docstring's second form: `heads(first, end)` builds the body of a ranged kernel
    over query heads."""

    def __init__(self, k: KernelBuilder, dims: Dims, tiles: Mapping[str, int]) -> None:
        self.kb = k
        self.heads, self.kv_heads, self.dim = (int(dims[key]) for key in ("num_heads", "num_kv_heads", "head_dim"))
        self.group = self.heads // self.kv_heads
        self.block_q, self.block_k, self.mr, self.nr = (tiles[key] for key in ("block_q", "block_k", "mr", "nr"))
        self.dot_rows = tiles["dot_rows"]
        self.tiles = tiles
        _, self.cache_element, self.out_element = _cache_types(dims)
        self.qkv, self.k_cache, self.v_cache, self.out = k.buffers
        self.position = k.scalars["position"]
        rows = self.group * self.block_q
        self.q = k.alloc("q", [rows, self.dim], f32)  # the queries, pre-scaled
        self.acc = k.alloc("acc", [rows, self.dim], f32)
        self.scores = k.alloc("s", [rows, self.block_k], f32)  # scores, then probabilities
        self.keys_t = k.alloc("kt", [1, self.dim, self.block_k], f32)  # the K block transposed: one GEMM panel
        self.peak, self.total, self.alpha = (k.alloc(name, [rows], f32) for name in ("m", "l", "alpha"))
        gemm_tiles = {"nr": self.block_k, "mr": self.mr, "kc": self.dim, "ku": tiles["ku"], "lanes": tiles["lanes"],
                      "min_chains": tiles["min_chains"], "accumulators": tiles["accumulators"],
                      "mc": -(-rows // self.mr) * self.mr}  # fmt: skip
        operands = GemmOperands(self.q, self.keys_t, self.scores)
        self.score_gemm = Gemm(k, self.block_k, self.dim, "store", gemm_tiles, operands, k.index(0))

    def heads_of(self, first: SSAValue, end: SSAValue) -> None:
        """The query heads [first, end), a kv group at a time."""
        k, group = self.kb, self.kb.index(self.group)
        last_group = k.divsi(k.addi(end, k.index(self.group - 1)), group)
        with k.loop(k.divsi(first, group), last_group, k.index(1)) as g:
            lo = k.muli(g.iv, group)
            first_head = k.maxsi(first, lo)
            heads = k.subi(k.minsi(end, k.addi(lo, group)), first_head)
            tokens = k.size(self.qkv)
            with k.loop(k.index(0), tokens, k.index(self.block_q)) as block:
                count = k.minsi(k.index(self.block_q), k.subi(tokens, block.iv))
                self.query_block(g.iv, first_head, heads, block.iv, count)

    def rows(self, heads: SSAValue, count: SSAValue, body: Callable[[SSAValue, SSAValue, SSAValue], None]) -> None:
        """body(row, head offset, token offset) for the tile's rows: row = head offset * count + token offset."""
        k = self.kb
        with k.loop(k.index(0), heads, k.index(1)) as head:
            first_row = k.muli(head.iv, count)
            with k.loop(k.index(0), count, k.index(1)) as token:
                body(k.addi(first_row, token.iv), head.iv, token.iv)

    def query_block(self, g: SSAValue, first_head: SSAValue, heads: SSAValue, t0: SSAValue, count: SSAValue) -> None:
        k, dim = self.kb, self.dim
        zero = k.index(0)

        def start(row: SSAValue, head: SSAValue, token: SSAValue) -> None:
            column = k.muli(k.addi(first_head, head), k.index(dim))
            query = k.load(self.qkv, [k.addi(t0, token), column], [dim])
            k.store(k.map([query], lambda e, v: e.mulf(v, e.f32(dim**-0.5))), self.q, [row, zero])
            k.store(k.splat(k.f32(0.0), [dim]), self.acc, [row, zero])
            k.store(k.f32(float("-inf")), self.peak, [row])
            k.store(k.f32(0.0), self.total, [row])

        self.rows(heads, count, start)
        rows = k.muli(heads, count)
        seen = k.addi(k.addi(self.position, t0), count)  # the keys the block's last query sees
        with k.loop(zero, seen, k.index(self.block_k)) as block:
            keys = k.minsi(k.index(self.block_k), k.subi(seen, block.iv))
            few = k.cmpi("slt", rows, k.index(self.dot_rows))
            with k.when(few):
                self.dot_scores(g, rows, block.iv, keys)
            with k.when(k.cmpi("sge", rows, k.index(self.dot_rows))):
                self.transpose_keys(g, block.iv, keys)
                self.score_gemm.rows(zero, rows)
            self.rows(heads, count, lambda row, _, token: self.softmax(row, k.addi(t0, token), block.iv))
            row_blocks(k, zero, rows, self.mr, lambda row, size: self.update(g, row, size, block.iv, keys))

        def finish(row: SSAValue, head: SSAValue, token: SSAValue) -> None:
            total = k.load(self.total, [row])
            result = k.map([k.load(self.acc, [row, zero], [dim]), total], lambda e, a, z: e.divf(a, z))
            column = k.muli(k.addi(first_head, head), k.index(dim))
            k.store(k.convert(result, self.out_element), self.out, [k.addi(t0, token), column])

        self.rows(heads, count, finish)

    def transpose_keys(self, g: SSAValue, k0: SSAValue, keys: SSAValue) -> None:
        """kt[0, :, j] = K[k0 + j, g, :] for j < keys: blocks of 16 keys by 16 dims, then the last keys alone."""
        k, dim, zero = self.kb, self.dim, self.kb.index(0)
        whole = k.muli(k.divsi(keys, k.index(16)), k.index(16))
        with k.loop(zero, whole, k.index(16)) as chunk:
            keys_at = k.addi(k0, chunk.iv)

            def transpose(d0: SSAValue, width: int) -> None:
                block = k.load(self.k_cache, [keys_at, g, d0], [16, width], axes=(0, 2))
                k.store(k.convert(block, f32), self.keys_t, [zero, d0, chunk.iv], axes=(2, 1))

            k.blocks(dim, 16, transpose)  # a loop: each 16 x 16 block is 64 shuffles, costly to compile unrolled
        with k.loop(whole, keys, k.index(1)) as key:
            row = k.load(self.k_cache, [k.addi(k0, key.iv), g, zero], [dim])
            k.store(k.convert(row, f32), self.keys_t, [zero, zero, key.iv], axes=(1,))

    def dot_scores(self, g: SSAValue, rows: SSAValue, k0: SSAValue, keys: SSAValue) -> None:
        """scores[r, j] = q_r · K[k0 + j] for each row: 16 keys at a time, then the last keys one by one (no
        masked loads: a CPU without them would load element by element)."""
        k, dim, zero = self.kb, self.dim, self.kb.index(0)
        width = min(16, self.block_k)
        whole = k.muli(k.divsi(keys, k.index(width)), k.index(width))
        with k.loop(zero, rows, k.index(1)) as row:
            query = k.load(self.q, [row.iv, zero], [1, dim])
            for start, end, count in ((zero, whole, width), (whole, keys, 1)):
                with k.loop(start, end, k.index(count)) as chunk:
                    block = k.load(self.k_cache, [k.addi(k0, chunk.iv), g, zero], [count, dim], axes=(0, 2))
                    zeros = k.splat(k.f32(0.0), [1, count])
                    scores = k.mma(query, k.convert(block, f32), zeros, rhs_transposed=True)
                    k.store(scores, self.scores, [row.iv, chunk.iv])

    def softmax(self, row: SSAValue, token: SSAValue, k0: SSAValue) -> None:
        """The online-softmax step of one row: keys k0 + j <= position + token are visible."""
        k, minus_infinity = self.kb, float("-inf")
        visible = k.cast(k.subi(k.addi(k.addi(self.position, token), k.index(1)), k0), i32)
        scores = k.map(
            [k.load(self.scores, [row, k.index(0)], [self.block_k]), k.iota(self.block_k), visible],
            lambda e, s, at, limit: e.select(e.cmpi("slt", at, limit), s, e.f32(minus_infinity)),
        )
        peak = k.load(self.peak, [row])
        new_peak = k.maximumf(peak, k.reduce("max", scores))
        probabilities = k.map([scores, new_peak], lambda e, s, m: e.exp(e.subf(s, m)))
        alpha = k.exp(k.subf(peak, new_peak))
        k.store(probabilities, self.scores, [row, k.index(0)])
        k.store(k.addf(k.mulf(k.load(self.total, [row]), alpha), k.reduce("add", probabilities)), self.total, [row])
        k.store(new_peak, self.peak, [row])
        k.store(alpha, self.alpha, [row])

    def update(self, g: SSAValue, row: SSAValue, size: int, k0: SSAValue, keys: SSAValue) -> None:
        """acc[row : row + size] = acc alpha + p · V[k0 : k0 + keys], nr columns of D at a time (fewer where
        size x nr accumulators would not fit the registers: stripe_width)."""
        k, columns = self.kb, stripe_width(size, self.tiles)
        alpha = k.load(self.alpha, [row], [size])
        for c0 in range(0, self.dim, columns):
            width, column = min(columns, self.dim - c0), k.index(c0)
            previous = k.load(self.acc, [row, column], [size, width])
            rescaled = k.map([previous, k.broadcast(alpha, 1, width)], lambda e, a, s: e.mulf(a, s))
            with k.loop(k.index(0), keys, k.index(1), [rescaled]) as key:
                p = k.load(self.scores, [row, key.iv], [size, 1])
                v = k.load(self.v_cache, [k.addi(k0, key.iv), g, column], [1, width], axes=(0, 2))
                key.yield_(k.mma(p, k.convert(v, f32), key.args[0]))
            k.store(key.results[0], self.acc, [row, column])


def attention_rows(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """attention for a core's vectors: the module docstring's second form."""
    buffers = _attention_buffers(dims)
    k = KernelBuilder(buffers, scalars=("position",), ranged=True)
    RowBlockedAttention(k, dims, tiles).heads_of(*k.program_range)
    return k.finish()


def attention_kernel(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """The form the tiles ask for: rows of query heads and tokens (`block_q`: x86), or a program per query
    head and block of tokens (`query_rows`: the GPUs)."""
    return attention_rows(dims, tiles) if "block_q" in tiles else attention(dims, tiles)


KERNELS = {"kv_append": kv_append, "attention": attention_kernel}
SCALARS = {"kv_append": ("position",), "attention": ("position",)}

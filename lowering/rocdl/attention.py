"""ROCDL kernels: attention (see tiling/gpu_attention.py for their tiles).

attention: causal grouped-query attention of this call's queries over the KV cache, flash-style.

Operands (launch order): qkv [tokens, (Hq + 2 Hkv) D] f32 (queries at columns h D, keys and values after
them: only the queries are read here), k_cache and v_cache [max_seq_len, Hkv, D] (f32 | bf16, dims
cache_dtype; rows [0, position + tokens) hold this call's keys already, kv_append ran first), out
[tokens, Hq D] (f32 | bf16, dims out_dtype). Query t (absolute position position + t) of head h reads kv
head h / G (G = Hq / Hkv) and keys 0 .. position + t: out[t, h D + d] = sum_s p_s V[s, h / G, d] with
p = softmax_s(q_t · K[s, h / G] * D^-0.5) — lowering/x86/attention.py's semantics.

Geometry: workgroup (g, y) is kv head g and query tokens t0 = y block_q .. t0 + block_q - 1; its
R = G block_q query rows are token-major, row r = (t - t0) G + (h - g G), and wave w owns rows
16 w .. 16 w + 15 — column n = l % 16 of its MFMA tiles is row 16 w + n, so every lane knows its own query
(t, h). Rows past R or past the call's tokens compute on zero queries and are never stored; a wave with
no valid row (decode: only wave 0 has one) skips the arithmetic and only helps staging.

Per key block k0 = 0, block_k, ... < position + min(t0 + block_q, tokens) (the block's causal end):
  1. all threads store K and V rows k0 .. k0 + block_k - 1 into LDS as the MFMA element (widened or
     rounded to nearest even when the cache differs); each thread holds 4-element chunks of them (thread
     t: chunks t, t + threads, ..., row-major), fetched into registers during the previous block's
     arithmetic (software pipelining: the loads' latency overlaps the MFMAs). Keys at or past the causal
     end are zeros, never loaded (V must be: 0 * garbage could be NaN). Barrier; fetch block k0 + block_k.
  2. each wave whose rows can see a key of the block computes, all in registers:
     scores^T = K · Q^T, one 16x16 tile per 16 keys: A = K rows read along D (mfma.read_k_contiguous),
       B = Q^T, lane l holding Q[row l % 16][d + k_per_lane (l / 16) + i], loaded once before the loop.
       The accumulator puts key 4 (l / 16) + i of the tile, query l % 16 in lane l, element i: a query's
       scores lie in the 4 lanes l % 16 + 16 q.
     s = acc * D^-0.5, -inf where key > position + t; row max over the lane's elements then the 4 lanes
       (gpu.shuffle xor 16, 32); m' = max(m, max s), alpha = exp(m - m'), p = exp(s - m'),
       l' = l alpha + sum p (same reduction); the first block holds key 0, visible to every row, so m'
       is finite from then on and exp(-inf) = 0 covers the rest.
     out^T = out^T alpha + V^T · P^T: A = V^T (lane l: V[key k][d0 + l % 16], read down V's rows), B = P^T,
       which is the score accumulator itself — bf16: lane l holds P[l % 16][4 (l / 16) + i] of each
       16-key tile, B's layout exactly (packed to bf16); f32 (16x16x4, k = l / 16): step i of a 16-key
       tile uses key 4 (l / 16) + i for both A and B, the same sum in another order. The output
       accumulator puts d = d0 + 4 (l / 16) + i, query l % 16 in lane l, so alpha and l are the lane's own.
     Barrier (the next block overwrites the tiles).
  3. rows < tokens store out^T / l: lane l writes 4 consecutive d of its query per 16-column tile.
Under --precision fp32 the operands are f32 (16x16x4 MFMA), under bf16 they are bf16 (16x16x16): K, V,
Q and P are rounded to bf16, scores, softmax and accumulation stay f32. head_dim is padded to 16: the
extra K columns are zeroed once, the extra Q elements are zeros, the extra output rows are not stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from tessera.lowering.mlir_text import f32_to_bf16_bits
from tessera.lowering.rocdl import mfma
from tessera.lowering.rocdl.kernel_text import GpuKernel, GpuKernelBuilder, Grid, KernelInfo

WAVE = 64
ROWS = 16  # query rows per wave (the N side of the MFMA tile)
CHUNK = 4  # elements per global load / store (head_dim is a multiple of 4)
F32X4 = "vector<4xf32>"


@dataclass(frozen=True)
class _Shape:
    """The static facts of one attention kernel."""

    heads: int
    kv_heads: int
    head_dim: int
    dim: int  # head_dim padded to 16
    block_q: int
    block_k: int
    threads: int
    cache_dtype: str
    out_dtype: str
    op: mfma.Mfma

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    @property
    def rows(self) -> int:
        return self.group * self.block_q

    @property
    def qkv_cols(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim

    @property
    def storage(self) -> str:
        """The LDS element vector type of CHUNK elements."""
        return "vector<4xi16>" if self.op.element == "bf16" else F32X4


@dataclass(frozen=True)
class _Lane:
    """SSA values of this lane: its thread id, MFMA coordinates, kv head and query row."""

    tid: str
    lanes: mfma.WaveLanes
    group: str  # kv head
    token: str  # this lane's query token (of the call); valid only with `valid`
    head: str  # this lane's query head
    valid: str  # i1: the row is real (a token of this call)


def emit_attention(info: KernelInfo) -> GpuKernel:
    k_tile = next(tile for tile in info.lds if tile.name == "k_cache")
    s = _Shape(
        heads=info.dim("num_heads"),
        kv_heads=info.dim("num_kv_heads"),
        head_dim=info.dim("head_dim"),
        dim=k_tile.shape[-1],
        block_q=info.tile("block_q"),
        block_k=info.tile("block_k"),
        threads=info.tile("threads"),
        cache_dtype=str(info.dims.get("cache_dtype", "f32")),
        out_dtype=str(info.dims.get("out_dtype", "f32")),
        op=mfma.Mfma.for_element(info.arch, info.mma_element or "f32"),
    )
    waves = s.threads // WAVE
    assert s.threads % WAVE == 0 and s.rows <= ROWS * waves and s.block_k % ROWS == 0, (s, waves)
    assert s.dim % ROWS == 0 and s.head_dim % CHUNK == 0 and s.head_dim <= s.dim, s
    b = GpuKernelBuilder(info.name, ["qkv", "k_cache", "v_cache", "out"], info.lds, s.threads)

    tid = b.thread_id()
    group, query_block = b.block_id("x"), b.block_id("y")
    t0 = b.mul(query_block, b.index(s.block_q))
    tokens, position = b.to_index(b.tokens), b.to_index(b.position)
    # The wave index through readfirstlane: wave-uniform in an SGPR, so branches on it are scalar.
    wave_i32 = b.let("w", f"arith.divui {b.to_i32(tid)}, {b.i32(WAVE)} : i32")
    wave = b.to_index(b.let("w", f"rocdl.readfirstlane {wave_i32} : i32"))
    lanes = mfma.WaveLanes(b, b.rem(tid, b.index(WAVE)))
    row = b.add(b.mul(wave, b.index(ROWS)), lanes.col)
    token = b.add(t0, b.div(row, b.index(s.group)))
    head = b.add(b.mul(group, b.index(s.group)), b.rem(row, b.index(s.group)))
    valid = b.lt(token, tokens)
    if s.rows < ROWS * waves:
        valid = b.let("p", f"arith.andi {valid}, {b.lt(row, b.index(s.rows))} : i1")
    lane = _Lane(tid, lanes, group, token, head, valid)

    # Keys of the workgroup: [0, position + min(t0 + block_q, tokens)); of this wave: up to its last valid
    # row's position. A wave computes a block only if it has a valid row and the block starts before its end.
    causal_end = b.add(position, b.min_(b.add(t0, b.index(s.block_q)), tokens))
    first_row = b.mul(wave, b.index(ROWS))
    last_row = b.min_(b.add(first_row, b.index(ROWS - 1)), b.index(s.rows - 1))
    wave_has_rows = b.lt(b.add(t0, b.div(first_row, b.index(s.group))), tokens)
    last_token = b.add(t0, b.div(last_row, b.index(s.group)))
    wave_end = b.add(position, b.min_(b.add(last_token, b.index(1)), tokens))

    if s.dim > s.head_dim:
        _zero_k_padding(b, s, tid)
    queries = _load_queries(b, s, lane)
    visible_end = b.add(b.add(position, token), b.index(1))  # keys < visible_end are this row's
    tiles = s.dim // ROWS
    # Chunks travel as stored in the cache and are converted only when stored into LDS: a conversion at
    # the fetch would wait for the load there, undoing the pipelining.
    fetched = _fetch_block(b, s, lane, b.index(0), causal_end)
    raw_type = f"vector<{CHUNK}x{_cache_storage(s)}>"
    carried = [(mfma.zero_accumulator(b), mfma.ACC)] * tiles
    carried += [(b.f32(float("-inf")), "f32"), (b.f32(0.0), "f32")]
    carried += [(raw, raw_type) for raw in fetched]
    with b.loop(b.index(0), causal_end, b.index(s.block_k), carried) as loop:
        k0 = loop.iv
        state, staged = loop.args[: tiles + 2], loop.args[tiles + 2 :]
        rounds = len(staged) // 2
        _store_block(b, s, lane, "k_cache", staged[:rounds])
        _store_block(b, s, lane, "v_cache", staged[rounds:])
        b.barrier()
        prefetched = _fetch_block(b, s, lane, b.add(k0, b.index(s.block_k)), causal_end)
        active = b.let("p", f"arith.andi {wave_has_rows}, {b.lt(k0, wave_end)} : i1")
        types = [mfma.ACC] * tiles + ["f32", "f32"]
        updated = b.if_yield(
            active, types, lambda: _key_block(b, s, lane, queries, state, k0, visible_end), lambda: state
        )
        b.barrier()
        loop.yield_(*updated, *prefetched)

    *outputs, _, total = loop.results[: tiles + 2]
    with b.if_else(valid):
        _store_output(b, s, lane, outputs, total)
    grid = Grid(x=(s.kv_heads, 1), y=("tokens", s.block_q))
    return GpuKernel(info.name, b.render(), s.threads, grid, sum(tile.bytes for tile in info.lds))


def _zero_k_padding(b: GpuKernelBuilder, s: _Shape, tid: str) -> None:
    """K columns head_dim .. dim - 1 (the MFMA's padding of D) <- 0, once: staging never writes them, and
    zero queries alone would not do (LDS starts as anything, NaN included). Read after the first barrier."""
    chunks = (s.dim - s.head_dim) // CHUNK
    zero = b.const("0" if s.op.element == "bf16" else "0.0", s.storage)

    def store(index: str) -> None:
        column = b.add(b.index(s.head_dim), b.mul(b.rem(index, b.index(chunks)), b.index(CHUNK)))
        b.lds_store_vector(zero, "k_cache", [b.div(index, b.index(chunks)), column], CHUNK)

    _strided(b, s, tid, s.block_k * chunks, store)


def _strided(b: GpuKernelBuilder, s: _Shape, tid: str, count: int, body: Callable[[str], None]) -> None:
    """body(i) for i = tid, tid + threads, ... < count (unrolled; the last round guarded when partial)."""
    for start in range(0, count, s.threads):
        index = b.add(tid, b.index(start))
        if start + s.threads <= count:
            body(index)
        else:
            with b.if_else(b.lt(index, b.index(count))):
                body(index)


def _load_queries(b: GpuKernelBuilder, s: _Shape, lane: _Lane) -> list[str]:
    """The B fragments of Q^T for every k step of D (zeros for rows that are not valid and past head_dim):
    f32: Q[row][d + l / 16]; bf16: Q[row][d + 4 (l / 16) + i], i = 0..3, rounded to bf16."""
    op = s.op
    steps = list(range(0, s.dim, op.k))
    zero = b.const("0" if op.element == "bf16" else "0.0", op.operand_type)

    def loaded() -> list[str]:
        base = b.add(b.mul(lane.token, b.index(s.qkv_cols)), b.mul(lane.head, b.index(s.head_dim)))
        fragments = []
        for d in steps:
            column = b.add(b.index(d), b.mul(lane.lanes.quad, b.index(op.k_per_lane)))
            offset = b.to_i32(b.add(base, column))
            if op.element == "f32":  # d + l / 16 < head_dim exactly when d < head_dim (both multiples of 4)
                fragments.append(b.gload("qkv", offset) if d < s.head_dim else zero)
            elif d + op.k <= s.head_dim:
                fragments.append(_q_bf16(b, offset))
            else:  # the last k step of a padded D: lanes past head_dim read nothing
                inside = b.lt(column, b.index(s.head_dim))
                fragments += b.if_yield(
                    inside, [op.operand_type], functools.partial(_q_bf16_list, b, offset), lambda: [zero]
                )
        return fragments

    return b.if_yield(lane.valid, [op.operand_type] * len(steps), loaded, lambda: [zero] * len(steps))


def _q_bf16_list(b: GpuKernelBuilder, offset: str) -> list[str]:
    return [_q_bf16(b, offset)]


def _q_bf16(b: GpuKernelBuilder, offset: str) -> str:
    raw = b.gload_vector("qkv", offset, "f32", CHUNK)
    return f32_to_bf16_bits(b, raw, F32X4, quiet_nan=True)


def _cache_storage(s: _Shape) -> str:
    return "i16" if s.cache_dtype == "bf16" else "f32"


def _rounds(s: _Shape) -> range:
    """First chunk of each staging round: thread t copies chunks t + start (CHUNK elements of one row)."""
    return range(0, s.block_k * (s.head_dim // CHUNK), s.threads)


def _chunk(b: GpuKernelBuilder, s: _Shape, lane: _Lane, start: int) -> tuple[str, str, str | None]:
    """This thread's chunk of a staging round: (key row in the block, column, i1 'chunk exists' or None)."""
    chunks = s.head_dim // CHUNK
    index = b.add(lane.tid, b.index(start))
    exists = None if start + s.threads <= s.block_k * chunks else b.lt(index, b.index(s.block_k * chunks))
    return b.div(index, b.index(chunks)), b.mul(b.rem(index, b.index(chunks)), b.index(CHUNK)), exists


def _fetch_block(b: GpuKernelBuilder, s: _Shape, lane: _Lane, k0: str, causal_end: str) -> list[str]:
    """This thread's chunks of the K block, then of the V block, starting at key k0."""
    return _fetch(b, s, lane, "k_cache", k0, causal_end) + _fetch(b, s, lane, "v_cache", k0, causal_end)


def _fetch(b: GpuKernelBuilder, s: _Shape, lane: _Lane, operand: str, k0: str, causal_end: str) -> list[str]:
    """This thread's chunks of cache rows k0 .. k0 + block_k - 1 (kv head `group`), as stored: zeros for keys
    at or past the causal end (never loaded). Consecutive threads take consecutive chunks of a row."""
    raw_type = f"vector<{CHUNK}x{_cache_storage(s)}>"
    zero = b.const("0" if s.cache_dtype == "bf16" else "0.0", raw_type)
    fetched = []
    for start in _rounds(s):
        key_row, column, exists = _chunk(b, s, lane, start)
        key = b.add(k0, key_row)
        wanted = b.lt(key, causal_end)
        if exists is not None:
            wanted = b.let("p", f"arith.andi {wanted}, {exists} : i1")

        def loaded(key: str = key, column: str = column) -> list[str]:
            offset = b.add(b.mul(b.add(b.mul(key, b.index(s.kv_heads)), lane.group), b.index(s.head_dim)), column)
            return [b.gload_vector(operand, b.to_i32(offset), s.cache_dtype, CHUNK)]

        fetched += b.if_yield(wanted, [raw_type], loaded, lambda: [zero])
    return fetched


def _store_block(b: GpuKernelBuilder, s: _Shape, lane: _Lane, operand: str, fetched: list[str]) -> None:
    """LDS tile `operand`[row][column..column+3] <- this thread's fetched chunks, as the MFMA element."""
    for start, raw in zip(_rounds(s), fetched, strict=True):
        key_row, column, exists = _chunk(b, s, lane, start)

        def store(raw: str = raw, key_row: str = key_row, column: str = column) -> None:
            b.lds_store_vector(_convert(b, raw, s.cache_dtype, s.op.element), operand, [key_row, column], CHUNK)

        if exists is None:
            store()
        else:
            with b.if_else(exists):
                store()


def _convert(b: GpuKernelBuilder, raw: str, dtype: str, element: str) -> str:
    """4 cache elements as stored (f32, or bf16 bits) -> 4 MFMA elements (f32, or bf16 bits)."""
    if dtype == element:
        return raw
    if element == "bf16":
        return f32_to_bf16_bits(b, raw, F32X4, quiet_nan=True)
    wide = b.let("h", f"arith.extui {raw} : vector<4xi16> to vector<4xi32>")
    high = b.let("h", f"arith.shli {wide}, {b.const('16', 'vector<4xi32>')} : vector<4xi32>")
    return b.let("h", f"arith.bitcast {high} : vector<4xi32> to {F32X4}")


def _key_block(
    b: GpuKernelBuilder, s: _Shape, lane: _Lane, queries: list[str], state: list[str], k0: str, visible_end: str
) -> list[str]:
    """One wave's online-softmax step over the staged key block: returns the new output tiles, m and l."""
    op = s.op
    *outputs, old_max, old_sum = state
    key_tiles = s.block_k // ROWS
    scale = b.f32(s.head_dim**-0.5)
    ninf = b.f32(float("-inf"))
    scores: list[list[str]] = []  # [key tile][i]: key k0 + 16 tile + 4 (l / 16) + i of this lane's row
    for tile in range(key_tiles):
        # All of the tile's K fragments first: their LDS reads overlap instead of each waiting for its MFMA.
        keys = [mfma.read_k_contiguous(b, op, "k_cache", lane.lanes, b.index(tile * ROWS), b.index(d))
                for d in range(0, s.dim, op.k)]  # fmt: skip
        acc = mfma.zero_accumulator(b)
        for fragment, query in zip(keys, queries, strict=True):
            acc = mfma.multiply(b, op, fragment, query, acc)
        first_key = b.add(b.add(k0, b.index(tile * ROWS)), b.mul(lane.lanes.quad, b.index(4)))
        row = []
        for i in range(4):
            score = b.fmul(mfma.element(b, acc, i), scale)
            visible = b.lt(b.add(first_key, b.index(i)), visible_end)
            row.append(b.let("s", f"arith.select {visible}, {score}, {ninf} : f32"))
        scores.append(row)
    flat = [score for row in scores for score in row]
    block_max = flat[0]
    for score in flat[1:]:
        block_max = b.fmax(block_max, score)
    new_max = b.fmax(old_max, _quad_reduce(b, block_max, "arith.maximumf"))
    alpha = b.math("exp", b.let("f", f"arith.subf {old_max}, {new_max} : f32"))
    probabilities = [[b.math("exp", b.let("f", f"arith.subf {x}, {new_max} : f32")) for x in row] for row in scores]
    block_sum = b.f32(0.0)
    for p in (p for row in probabilities for p in row):
        block_sum = b.fadd(block_sum, p)
    new_sum = b.fadd(b.fmul(old_sum, alpha), _quad_reduce(b, block_sum, "arith.addf"))

    alpha_splat = b.let("al", f"vector.broadcast {alpha} : f32 to {mfma.ACC}")
    if op.element == "bf16":
        fragments = [[b.let("pf", f"vector.from_elements {', '.join(b.narrow(p) for p in row)} : vector<4xi16>")]
                     for row in probabilities]  # fmt: skip
    else:
        fragments = probabilities
    updated = []
    for dim_tile, output in enumerate(outputs):
        acc = b.let("o", f"arith.mulf {output}, {alpha_splat} : {mfma.ACC}")
        col0 = b.index(dim_tile * ROWS)
        pairs = [(tile, step, p) for tile, fragment in enumerate(fragments) for step, p in enumerate(fragment)]
        values = [_read_values(b, s, lane, tile, step, col0) for tile, step, _ in pairs]
        for value, (_, _, p) in zip(values, pairs, strict=True):
            acc = mfma.multiply(b, op, value, p, acc)
        updated.append(acc)
    return [*updated, new_max, new_sum]


def _read_values(b: GpuKernelBuilder, s: _Shape, lane: _Lane, tile: int, step: int, col0: str) -> str:
    """The A fragment of V^T for key tile `tile`, lane l reading V[16 tile + 4 (l / 16) + i][col0 + l % 16]:
    bf16 i = 0..3 (mfma.read_k_strided); f32 i = `step` alone (the key order of the score accumulator)."""
    if s.op.element == "bf16":
        return mfma.read_k_strided(b, s.op, "v_cache", lane.lanes, b.index(tile * ROWS), col0)
    key = b.add(b.index(tile * ROWS + step), b.mul(lane.lanes.quad, b.index(4)))
    return b.lds_load("v_cache", [key, b.add(col0, lane.lanes.col)])


def _quad_reduce(b: GpuKernelBuilder, value: str, combine: str) -> str:
    """`value` combined over the 4 lanes l % 16 + 16 q that hold one query row (xor 16, then 32)."""
    for offset in (16, 32):
        shuffled = b.fresh("s")
        b.emit(f"{shuffled}, {b.fresh('ok')} = gpu.shuffle xor {value}, {b.i32(offset)}, {b.i32(WAVE)} : f32")
        value = b.let("r", f"{combine} {value}, {shuffled} : f32")
    return value


def _store_output(b: GpuKernelBuilder, s: _Shape, lane: _Lane, outputs: list[str], total: str) -> None:
    """out[token, head D + d] = out^T[d][row] / l for d = 16 tile + 4 (l / 16) + i < head_dim, 4 at a time."""
    inverse = b.let("f", f"arith.divf {b.f32(1.0)}, {total} : f32")
    splat = b.let("f", f"vector.broadcast {inverse} : f32 to {F32X4}")
    width = s.heads * s.head_dim
    base = b.add(b.mul(lane.token, b.index(width)), b.mul(lane.head, b.index(s.head_dim)))
    for tile, output in enumerate(outputs):
        column = b.add(b.index(tile * ROWS), b.mul(lane.lanes.quad, b.index(4)))

        def store(output: str = output, column: str = column) -> None:
            value = b.let("o", f"arith.mulf {output}, {splat} : {F32X4}")
            stored, storage, size = value, F32X4, 16
            if s.out_dtype == "bf16":
                stored, storage, size = f32_to_bf16_bits(b, value, F32X4, quiet_nan=True), "vector<4xi16>", 8
            address = b.gaddr("out", b.to_i32(b.add(base, column)), s.out_dtype)
            b.emit(f"llvm.store {stored}, {address} {{alignment = {size} : i64}} : {storage}, !llvm.ptr<1>")

        if (tile + 1) * ROWS <= s.head_dim:
            store()
        else:
            with b.if_else(b.lt(column, b.index(s.head_dim))):
                store()


EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {"attention": emit_attention}

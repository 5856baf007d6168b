"""Causal grouped-query attention for x86: tiled online-softmax (flash) attention (the KV-cache append is
written once in kernels/attention.py).

Semantics are HF's NemotronHAttention (no RoPE, no QK norm, no bias): query head h reads kv head
h // (Hq / Hkv); query t of this call sits at absolute position past + t and sees cached positions <= past + t;
scores are q·k * head_dim**-0.5.

Notation: Hq query heads, Hkv kv heads, G = Hq / Hkv, D head_dim, S max_seq_len, QKV = (Hq + 2*Hkv)*D,
T the (dynamic) token count of this call. `qkv` is the fused projection: q = cols [0, Hq*D) (head h at h*D),
k = cols [Hq*D, (Hq+Hkv)*D), v = the last Hkv*D columns. Caches hold `cache_dtype` ("f32" or "bf16";
bf16 caches are passed as numpy uint16 arrays of bfloat16 bits).

Kernel ABI (every kernel returns nothing; the last two arguments are the parallel range, so two threads can
call one kernel on disjoint ranges):

    attention(%qkv: memref<?xQKVxf32>, %k_cache, %v_cache, %out: memref<?x(Hq*D)xOT>,
              %past: index, %begin: index, %end: index)
        For query heads h in [begin, end): out[t, h*D:(h+1)*D] = softmax_s(q_t·k_s * scale) · v_s over cache
        positions s <= past + t (the keys of this call must already be appended). OT is emit_attention's
        `out_dtype` ("f32", or "bf16" for a bf16 GEMM that reads out: computed in f32, rounded to nearest
        even when stored).

Attention algorithm: the query heads of [begin, end) are visited one kv group at a time; the selected heads
of a group and a block of block_q query positions form the rows of one tile (row r = head*bq + t), so each
K/V block is read once per group. For each key block of block_k positions up to the block's causal limit
(fully masked blocks are never visited) the kernel computes the score tile, masks the keys a row may not
see, updates the running max m, running sum l and the rescaled accumulator acc (online softmax), and at the
end writes acc / l. Two score methods: normally the K block is transposed into `kt` [D, block_k] (16x16
register transposes) and scores come from a register-tiled outer-product loop over D (ROW_TILE rows
broadcast x KEY_VECS vectors of 16 keys); with fewer than DOT_ROWS rows (decode with small groups) each
score is a 16-wide dot product along D, 16 keys' partial sums folded into one vector by shuffles. P·V
broadcasts p and reads V rows along D (ROW_TILE rows x DIM_VECS chunks of 16 columns in registers). The q
tile is pre-scaled and zero-padded to a multiple of 16 columns; D and block_k need not be multiples of 16
(masked loads/stores of the last chunk, masked scores). Working buffers (q tile, acc, score tile, kt,
m/l/alpha) are malloc'ed once per call with group * min(block_q, T) rows, so decode allocates a few rows;
`footprint_bytes` reports the full-tile size. exp is a Cephes-style polynomial (rel. error ~1e-7) in plain
arith ops, so that it vectorises on every x86-64 (LLVM would scalarise `math.exp` into libm calls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tessera.lowering.mlir_text import MlirBuilder, bf16_to_f32, f32_to_bf16
from tessera.lowering.x86.fold import fold16

VEC = 16  # f32 lanes of one 512-bit vector
VF32 = f"vector<{VEC}xf32>"
CACHE_DTYPES = ("f32", "bf16")
OUT_DTYPES = ("f32", "bf16")

ROW_TILE = 6  # rows of one register tile (score GEMM and P·V)
KEY_VECS = 4  # 16-key vectors per score register tile: ROW_TILE * KEY_VECS accumulators
DIM_VECS = 4  # 16-column chunks of D per P·V register tile: ROW_TILE * DIM_VECS accumulators
DOT_ROWS = 4  # tiles with fewer rows compute scores as dot products (measured: transposing K pays from ~3 rows)


@dataclass(frozen=True)
class AttentionDims:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_seq_len: int
    block_q: int = 64
    block_k: int = 64  # tile sizes (chosen by the compiler's tile pass; the kernel reads them)

    def __post_init__(self) -> None:
        sizes = (self.num_heads, self.num_kv_heads, self.head_dim, self.max_seq_len, self.block_q, self.block_k)
        if min(sizes) < 1:
            raise ValueError(f"attention dimensions must be positive: {self}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def qkv_cols(self) -> int:
        return (self.num_heads + 2 * self.num_kv_heads) * self.head_dim

    @property
    def out_cols(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def tile_rows(self) -> int:
        return self.group * self.block_q

    @property
    def dim_chunks(self) -> int:
        return -(-self.head_dim // VEC)

    @property
    def key_vecs(self) -> int:
        return -(-self.block_k // VEC)


def _cache_type(d: AttentionDims, cache_dtype: str) -> str:
    if cache_dtype not in CACHE_DTYPES:
        raise ValueError(f"cache_dtype must be one of {CACHE_DTYPES}, not {cache_dtype!r}")
    return f"memref<{d.max_seq_len}x{d.num_kv_heads}x{d.head_dim}x{cache_dtype}>"


def _out_type(d: AttentionDims, out_dtype: str) -> str:
    if out_dtype not in OUT_DTYPES:
        raise ValueError(f"out_dtype must be one of {OUT_DTYPES}, not {out_dtype!r}")
    return f"memref<?x{d.out_cols}x{out_dtype}>"


def footprint_bytes(kind: str, d: AttentionDims, cache_dtype: str = "f32") -> int:
    """Fast-memory bytes one call keeps live: for attention the q tile, acc, score tile, transposed K block,
    m/l/alpha and the K and V blocks read from the cache."""
    element = 4 if cache_dtype == "f32" else 2
    if kind != "attention":
        raise ValueError(f"unknown attention kernel kind {kind!r}")
    rows, padded_dim, padded_keys = d.tile_rows, d.dim_chunks * VEC, d.key_vecs * VEC
    buffers = 2 * rows * padded_dim + rows * padded_keys + d.head_dim * padded_keys + 3 * rows
    return 4 * buffers + 2 * d.block_k * d.head_dim * element


# --- arithmetic helpers -------------------------------------------------------------------------------------


def _fma(b: MlirBuilder, x: str, y: str, acc: str, type_: str = VF32) -> str:
    """x*y + acc; `contract` lets LLVM fuse it into one FMA where the CPU has FMA (baseline: mul + add)."""
    product = b.let("m", f"arith.mulf {x}, {y} fastmath<contract> : {type_}")
    return b.let("f", f"arith.addf {product}, {acc} fastmath<contract> : {type_}")


def _exp(b: MlirBuilder, x: str, type_: str) -> str:
    """exp(x) for x <= 0 (f32 or vector): 2^n * p(r) with n = round(x*log2 e), r = x - n ln2 (Cephes expf).
    x <= -87 (or NaN, or -inf) gives exactly 0; rounding uses the 1.5*2^23 trick (no SSE4.1 floor).

    The kernels of kernels/ use tessera-expand-math's typed pattern (lowering/math/exp.py exp_cephes): this
    algorithm op for op, with its bits wherever this one is defined (test/kernels/test_expand_math.py), and
    defined for every x (NaN stays NaN, +inf above 88.376). This text copy goes away with the last
    hand-written x86 emitter that calls it (this file's attention, mamba.py's `_exp` being a variant)."""
    int_type = type_.replace("f32", "i32")
    floor = b.f32(-87.0, type_)
    above = b.let("c", f"arith.cmpf ogt, {x}, {floor} : {type_}")
    clamped = b.let("x", f"arith.select {above}, {x}, {floor} : {_mask_type(type_)}, {type_}")
    scaled = b.let("x", f"arith.mulf {clamped}, {b.f32(1.4426950408889634, type_)} : {type_}")
    magic = b.f32(12582912.0, type_)
    biased = b.let("x", f"arith.addf {scaled}, {magic} : {type_}")
    rounded = b.let("n", f"arith.subf {biased}, {magic} : {type_}")
    r = _fma(b, rounded, b.f32(-0.693359375, type_), clamped, type_)
    r = _fma(b, rounded, b.f32(2.12194440e-4, type_), r, type_)
    poly = b.f32(1.9875691500e-4, type_)
    for coefficient in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        poly = _fma(b, poly, r, b.f32(coefficient, type_), type_)
    r2 = b.let("x", f"arith.mulf {r}, {r} : {type_}")
    poly = _fma(b, poly, r2, r, type_)
    poly = b.let("x", f"arith.addf {poly}, {b.f32(1.0, type_)} : {type_}")
    n = b.let("n", f"arith.fptosi {rounded} : {type_} to {int_type}")
    exponent = b.let("n", f"arith.addi {n}, {b.const('127', int_type)} : {int_type}")
    bits = b.let("n", f"arith.shli {exponent}, {b.const('23', int_type)} : {int_type}")
    two_n = b.let("x", f"arith.bitcast {bits} : {int_type} to {type_}")
    value = b.let("x", f"arith.mulf {poly}, {two_n} : {type_}")
    return b.let("e", f"arith.select {above}, {value}, {b.f32(0.0, type_)} : {_mask_type(type_)}, {type_}")


def _mask_type(type_: str) -> str:
    return type_.replace("f32", "i1").replace("i32", "i1")


def _max(b: MlirBuilder, x: str, y: str, type_: str) -> str:
    """max without NaN bookkeeping (compare + select: one vmaxps)."""
    greater = b.let("c", f"arith.cmpf ogt, {x}, {y} : {type_}")
    return b.let("x", f"arith.select {greater}, {x}, {y} : {_mask_type(type_)}, {type_}")


def _chunk_mask(b: MlirBuilder, valid: int) -> str:
    """The constant lane mask of a partial 16-lane chunk whose first `valid` lanes are in bounds."""
    lanes = ", ".join("true" if lane < valid else "false" for lane in range(VEC))
    return b.const(f"[{lanes}]", f"vector<{VEC}xi1>")


def _chunk_width(d: AttentionDims, chunk: int) -> int:
    return min(VEC, d.head_dim - chunk * VEC)


# --- vector access to rows of D columns ---------------------------------------------------------------------


def _load_chunk(b: MlirBuilder, d: AttentionDims, memref: str, type_: str, indices: str, chunk: int) -> str:
    """16 f32 values of D-chunk `chunk` (lanes past D read as 0); `indices` ends with the chunk's column."""
    element = type_.rsplit("x", 1)[1].rstrip(">")
    width = _chunk_width(d, chunk)
    vec_type = f"vector<{VEC}x{element}>"
    if width == VEC:
        value = b.let("v", f"vector.load {memref}[{indices}] : {type_}, {vec_type}")
    else:
        zero = b.const("0.0", vec_type)
        mask = _chunk_mask(b, width)
        value = b.let("v", f"vector.maskedload {memref}[{indices}], {mask}, {zero} : {type_}, vector<{VEC}xi1>, "
                          f"{vec_type} into {vec_type}")  # fmt: skip
    return bf16_to_f32(b, value, f"vector<{VEC}xbf16>") if element == "bf16" else value


def _store_chunk(
    b: MlirBuilder, d: AttentionDims, value: str, memref: str, type_: str, indices: str, chunk: int
) -> None:
    element = type_.rsplit("x", 1)[1].rstrip(">")
    if element == "bf16":
        value = f32_to_bf16(b, value, VF32)
    vec_type = f"vector<{VEC}x{element}>"
    width = _chunk_width(d, chunk)
    if width == VEC:
        b.emit(f"vector.store {value}, {memref}[{indices}] : {type_}, {vec_type}")
    else:
        mask = _chunk_mask(b, width)
        b.emit(f"vector.maskedstore {memref}[{indices}], {mask}, {value} : {type_}, vector<{VEC}xi1>, {vec_type}")


# --- attention ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Buffers:
    """The per-call working memory of the attention kernel (names and types)."""

    q: str  # [rows, Dp] scaled queries, columns past D zero
    acc: str  # [rows, Dp] unnormalised output
    scores: str  # [rows, Kp] scores, then probabilities, of one key block
    kt: str  # [D, Kp] one K block transposed
    stats: str  # [3, rows]: running max, running sum, this block's rescale factor

    @staticmethod
    def types(d: AttentionDims) -> dict[str, str]:
        """Row counts are dynamic: group * min(block_q, T) rows, so that decode allocates a few rows only."""
        dp, kp = d.dim_chunks * VEC, d.key_vecs * VEC
        return {
            "q": f"memref<?x{dp}xf32>",
            "acc": f"memref<?x{dp}xf32>",
            "scores": f"memref<?x{kp}xf32>",
            "kt": f"memref<{d.head_dim}x{kp}xf32>",
            "stats": "memref<3x?xf32>",
        }


@dataclass(frozen=True)
class _Block:
    """SSA values of the current (group, query block, key block) iteration."""

    group: str  # kv head
    first_head: str  # first query head of the tile
    heads: str  # selected query heads of the group
    t0: str  # first query position of the block (relative to this call)
    bq: str  # query positions in this block
    rows: str  # heads * bq
    k0: str = ""  # first key position of the key block
    keys: str = ""  # valid keys in the key block (<= block_k)


def _allocate(b: MlirBuilder, d: AttentionDims) -> _Buffers:
    """Uninitialised working buffers: every element is written before it is read, except score and kt columns
    past a block's valid keys, which the softmax replaces by -inf with a select (so even NaN there is harmless)."""
    tokens = b.let("T", f"memref.dim %qkv, {b.index(0)} : memref<?x{d.qkv_cols}xf32>")
    block_rows = b.let("n", f"arith.minui {tokens}, {b.index(d.block_q)} : index")
    rows = b.let("n", f"arith.muli {block_rows}, {b.index(d.group)} : index")
    names = {
        key: b.let(key, f"memref.alloc({'' if key == 'kt' else rows}) {{alignment = 64 : i64}} : {type_}")
        for key, type_ in _Buffers.types(d).items()
    }
    return _Buffers(**names)


@contextmanager
def _tile_rows(b: MlirBuilder, blk: _Block) -> Iterator[tuple[str, str, str]]:
    """Loops over the tile's rows, yielding (row, query head, token index of this call):
    row = (head - first_head) * bq + token - t0."""
    with b.loop(b.index(0), blk.heads, b.index(1)) as head:
        first_row = b.let("r", f"arith.muli {head.iv}, {blk.bq} : index")
        query_head = b.let("h", f"arith.addi {blk.first_head}, {head.iv} : index")
        with b.loop(b.index(0), blk.bq, b.index(1)) as token:
            row = b.let("r", f"arith.addi {first_row}, {token.iv} : index")
            yield row, query_head, b.let("t", f"arith.addi {blk.t0}, {token.iv} : index")


def _load_queries(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block) -> None:
    """q tile rows <- q * head_dim**-0.5 (scaling the queries once is cheaper than scaling every score)."""
    types = _Buffers.types(d)
    qkv = f"memref<?x{d.qkv_cols}xf32>"
    scale = b.f32(d.head_dim**-0.5, VF32)
    with _tile_rows(b, blk) as (row, head, token):
        base = b.let("col", f"arith.muli {head}, {b.index(d.head_dim)} : index")
        for chunk in range(d.dim_chunks):
            col = b.let("col", f"arith.addi {base}, {b.index(chunk * VEC)} : index")
            value = _load_chunk(b, d, "%qkv", qkv, f"{token}, {col}", chunk)
            scaled = b.let("q", f"arith.mulf {value}, {scale} : {VF32}")
            b.emit(f"vector.store {scaled}, {buf.q}[{row}, {b.index(chunk * VEC)}] : {types['q']}, {VF32}")


def _init_rows(b: MlirBuilder, d: AttentionDims, buf: _Buffers, rows: str) -> None:
    """m = -inf, l = 0, acc = 0 for the rows of a new query block."""
    types = _Buffers.types(d)
    with b.loop(b.index(0), rows, b.index(1)) as row:
        b.emit(f"memref.store {b.f32(float('-inf'))}, {buf.stats}[{b.index(0)}, {row.iv}] : {types['stats']}")
        b.emit(f"memref.store {b.f32(0.0)}, {buf.stats}[{b.index(1)}, {row.iv}] : {types['stats']}")
        for chunk in range(d.dim_chunks):
            zero = b.f32(0.0, VF32)
            b.emit(f"vector.store {zero}, {buf.acc}[{row.iv}, {b.index(chunk * VEC)}] : {types['acc']}, {VF32}")


def _row_tiles(b: MlirBuilder, rows: str, body: Callable[[str, int], None]) -> None:
    """body(first_row, n) over [0, rows): tiles of ROW_TILE rows, then the remainder as one tile of each
    power of two it contains (5 = 4 + 1), so that few rows never run one at a time."""
    remainder = b.let("n", f"arith.remui {rows}, {b.index(ROW_TILE)} : index")
    first = b.let("n", f"arith.subi {rows}, {remainder} : index")
    with b.loop(b.index(0), first, b.index(ROW_TILE)) as tile:
        body(tile.iv, ROW_TILE)
    size = 1 << (ROW_TILE - 1).bit_length()
    while size > 1:
        size //= 2
        part = b.let("n", f"arith.andi {remainder}, {b.index(size)} : index")
        present = b.let("c", f"arith.cmpi ne, {part}, {b.index(0)} : index")
        with b.if_else(present):
            body(first, size)
        first = b.let("n", f"arith.addi {first}, {part} : index")


def _row_plus(b: MlirBuilder, row: str, offset: int) -> str:
    return row if offset == 0 else b.let("r", f"arith.addi {row}, {b.index(offset)} : index")


def _cache_scalar(b: MlirBuilder, d: AttentionDims, memref: str, cache: str, indices: str) -> str:
    value = b.let("s", f"memref.load {memref}[{indices}] : {cache}")
    return bf16_to_f32(b, value, "bf16") if cache.endswith("bf16>") else value


def _transpose_keys(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, cache: str) -> None:
    """kt[:, j] <- K[k0 + j, group, :] for the block's valid keys (columns past them keep stale values,
    which the softmax masks): 16x16 register transposes for whole groups of 16 keys, scalars for the rest."""
    types = _Buffers.types(d)
    remainder = b.let("n", f"arith.remui {blk.keys}, {b.index(VEC)} : index")
    whole = b.let("n", f"arith.subi {blk.keys}, {remainder} : index")
    with b.loop(b.index(0), whole, b.index(VEC)) as keys:
        first = b.let("p", f"arith.addi {blk.k0}, {keys.iv} : index")
        positions = [_row_plus(b, first, i) for i in range(VEC)]
        full_chunks = d.head_dim // VEC
        with b.loop(b.index(0), b.index(full_chunks * VEC), b.index(VEC)) as chunk:
            _transpose_chunk(b, d, buf, blk, cache, positions, keys.iv, chunk.iv, 0)
        if full_chunks < d.dim_chunks:
            _transpose_chunk(b, d, buf, blk, cache, positions, keys.iv, b.index(full_chunks * VEC), full_chunks)
    with b.loop(whole, blk.keys, b.index(1)) as key:
        position = b.let("p", f"arith.addi {blk.k0}, {key.iv} : index")
        with b.loop(b.index(0), b.index(d.head_dim), b.index(1)) as dim:
            value = _cache_scalar(b, d, "%k_cache", cache, f"{position}, {blk.group}, {dim.iv}")
            b.emit(f"memref.store {value}, {buf.kt}[{dim.iv}, {key.iv}] : {types['kt']}")


def _transpose_chunk(
    b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, cache: str, positions: list[str], key: str, col: str,
    chunk: int,
) -> None:  # fmt: skip
    """kt[col:col+16, key:key+16] <- K[positions, group, col:col+16]^T (`chunk` is the static chunk number,
    0 standing for every whole one, so that only the last partial chunk is masked)."""
    types = _Buffers.types(d)
    rows = [_load_chunk(b, d, "%k_cache", cache, f"{position}, {blk.group}, {col}", chunk) for position in positions]
    for lane, column in enumerate(_transpose16(b, rows)[: _chunk_width(d, chunk)]):
        dim = _row_plus(b, col, lane)
        b.emit(f"vector.store {column}, {buf.kt}[{dim}, {key}] : {types['kt']}, {VF32}")


def _transpose16(b: MlirBuilder, rows: list[str]) -> list[str]:
    """Transposes 16 vectors of 16 lanes: at each level k = 8, 4, 2, 1 swap the off-diagonal k x k blocks
    (element [i][j+k] <-> [i+k][j] for i, j with bit k clear), one 2-input shuffle per new row."""
    rows = list(rows)
    k = VEC // 2
    while k:
        low = ", ".join(str(j if not j & k else VEC + j - k) for j in range(VEC))
        high = ", ".join(str(j + k if not j & k else VEC + j) for j in range(VEC))
        for i in (i for i in range(VEC) if not i & k):
            a, c = rows[i], rows[i + k]
            rows[i] = b.let("t", f"vector.shuffle {a}, {c} [{low}] : {VF32}, {VF32}")
            rows[i + k] = b.let("t", f"vector.shuffle {a}, {c} [{high}] : {VF32}, {VF32}")
        k //= 2
    return rows


def _gemm_scores(b: MlirBuilder, d: AttentionDims, buf: _Buffers, first: str, n: int) -> None:
    """scores[rows first..first+n, :] = q · kt: a register tile of n rows x up to KEY_VECS 16-key vectors,
    accumulated over D with one broadcast query element per row."""
    types = _Buffers.types(d)
    for v0 in range(0, d.key_vecs, KEY_VECS):
        vecs = range(v0, min(d.key_vecs, v0 + KEY_VECS))
        zero = b.f32(0.0, VF32)
        rows = [_row_plus(b, first, i) for i in range(n)]
        with b.loop(b.index(0), b.index(d.head_dim), b.index(1), [(zero, VF32)] * (n * len(vecs))) as loop:
            keys = [b.let("k", f"vector.load {buf.kt}[{loop.iv}, {b.index(v * VEC)}] : {types['kt']}, {VF32}")
                    for v in vecs]  # fmt: skip
            for i, row in enumerate(rows):
                q = b.let("q", f"memref.load {buf.q}[{row}, {loop.iv}] : {types['q']}")
                qv = b.let("q", f"vector.broadcast {q} : f32 to {VF32}")
                for j, key in enumerate(keys):
                    loop.yielded.append(_fma(b, qv, key, loop.args[i * len(vecs) + j]))
        for i, row in enumerate(rows):
            for j, v in enumerate(vecs):
                result = loop.results[i * len(vecs) + j]
                b.emit(f"vector.store {result}, {buf.scores}[{row}, {b.index(v * VEC)}] : {types['scores']}, {VF32}")


def _dot_scores(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, cache: str) -> None:
    """scores[r, j] = q_r · K[k0 + j] as 16-wide products along D (few rows: no K transpose). Groups of 16
    keys keep 16 partial-sum vectors and fold them into one vector of 16 scores; leftover keys reduce alone."""
    types = _Buffers.types(d)
    remainder = b.let("n", f"arith.remui {blk.keys}, {b.index(VEC)} : index")
    whole = b.let("n", f"arith.subi {blk.keys}, {remainder} : index")
    with b.loop(b.index(0), blk.rows, b.index(1)) as row:
        queries = [
            b.let("q", f"vector.load {buf.q}[{row.iv}, {b.index(c * VEC)}] : {types['q']}, {VF32}")
            for c in range(d.dim_chunks)
        ]
        with b.loop(b.index(0), whole, b.index(VEC)) as keys:
            first = b.let("p", f"arith.addi {blk.k0}, {keys.iv} : index")
            partials = [_dot_partial(b, d, blk, cache, queries, _row_plus(b, first, i)) for i in range(VEC)]
            scores = fold16(b, partials)
            b.emit(f"vector.store {scores}, {buf.scores}[{row.iv}, {keys.iv}] : {types['scores']}, {VF32}")
        with b.loop(whole, blk.keys, b.index(1)) as key:
            position = b.let("p", f"arith.addi {blk.k0}, {key.iv} : index")
            total = _dot_partial(b, d, blk, cache, queries, position)
            score = b.let("s", f"vector.reduction <add>, {total} fastmath<reassoc> : {VF32} into f32")
            b.emit(f"memref.store {score}, {buf.scores}[{row.iv}, {key.iv}] : {types['scores']}")


def _dot_partial(b: MlirBuilder, d: AttentionDims, blk: _Block, cache: str, queries: list[str], position: str) -> str:
    """sum over D-chunks c of q[c] * K[position, group, c]: a vector whose lane sum is the score."""
    total = b.f32(0.0, VF32)
    for chunk, q in enumerate(queries):
        k = _load_chunk(b, d, "%k_cache", cache, f"{position}, {blk.group}, {b.index(chunk * VEC)}", chunk)
        total = _fma(b, q, k, total)
    return total


def _softmax_update(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, past: str) -> None:
    """Per row: mask keys past the row's position (and past the block), m' = max(m, max s), p = exp(s - m'),
    alpha = exp(m - m'), l = l*alpha + sum p; p overwrites the scores and alpha is kept for P·V."""
    types = _Buffers.types(d)
    ivec = f"vector<{VEC}xi32>"
    iota = b.const("[" + ", ".join(str(lane) for lane in range(VEC)) + "]", ivec)
    ninf = b.f32(float("-inf"), VF32)
    with _tile_rows(b, blk) as (row, _, token):
        # keys j < limit are visible: k0 + j <= past + token
        limit = b.let("l", f"arith.addi {past}, {token} : index")
        limit = b.let("l", f"arith.addi {limit}, {b.index(1)} : index")
        limit = b.let("l", f"arith.subi {limit}, {blk.k0} : index")
        limit = b.let("l", f"arith.minsi {limit}, {blk.keys} : index")
        limit = b.let("l", f"arith.index_cast {limit} : index to i32")
        limit = b.let("l", f"vector.broadcast {limit} : i32 to {ivec}")
        masked = []
        for v in range(d.key_vecs):
            s = b.let("s", f"vector.load {buf.scores}[{row}, {b.index(v * VEC)}] : {types['scores']}, {VF32}")
            lanes = b.let("j", f"arith.addi {iota}, {b.const(str(v * VEC), ivec)} : {ivec}")
            visible = b.let("c", f"arith.cmpi slt, {lanes}, {limit} : {ivec}")
            masked.append(b.let("s", f"arith.select {visible}, {s}, {ninf} : vector<{VEC}xi1>, {VF32}"))
        block_max = masked[0]
        for s in masked[1:]:
            block_max = _max(b, block_max, s, VF32)
        block_max = b.let("x", f"vector.reduction <maxnumf>, {block_max} fastmath<nnan> : {VF32} into f32")
        old_max = b.let("x", f"memref.load {buf.stats}[{b.index(0)}, {row}] : {types['stats']}")
        new_max = _max(b, old_max, block_max, "f32")
        new_max_v = b.let("x", f"vector.broadcast {new_max} : f32 to {VF32}")
        total = b.f32(0.0, VF32)
        for v, s in enumerate(masked):
            shifted = b.let("x", f"arith.subf {s}, {new_max_v} : {VF32}")
            p = _exp(b, shifted, VF32)
            b.emit(f"vector.store {p}, {buf.scores}[{row}, {b.index(v * VEC)}] : {types['scores']}, {VF32}")
            total = b.let("x", f"arith.addf {total}, {p} : {VF32}")
        block_sum = b.let("x", f"vector.reduction <add>, {total} fastmath<reassoc> : {VF32} into f32")
        alpha = _exp(b, b.let("x", f"arith.subf {old_max}, {new_max} : f32"), "f32")
        old_sum = b.let("x", f"memref.load {buf.stats}[{b.index(1)}, {row}] : {types['stats']}")
        new_sum = _fma(b, old_sum, alpha, block_sum, "f32")
        for slot, value in enumerate((new_max, new_sum, alpha)):
            b.emit(f"memref.store {value}, {buf.stats}[{b.index(slot)}, {row}] : {types['stats']}")


def _pv_update(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, cache: str, first: str, n: int) -> None:
    """acc[rows] = acc*alpha + p · V[k0:k0+keys]: a register tile of n rows x up to DIM_VECS chunks of D,
    one broadcast probability per row and key, V rows read along D straight from the cache."""
    types = _Buffers.types(d)
    rows = [_row_plus(b, first, i) for i in range(n)]
    alphas = []
    for row in rows:
        alpha = b.let("al", f"memref.load {buf.stats}[{b.index(2)}, {row}] : {types['stats']}")
        alphas.append(b.let("al", f"vector.broadcast {alpha} : f32 to {VF32}"))
    for c0 in range(0, d.dim_chunks, DIM_VECS):
        chunks = range(c0, min(d.dim_chunks, c0 + DIM_VECS))
        initial = []
        for row, alpha in zip(rows, alphas, strict=True):
            for c in chunks:
                acc = b.let("o", f"vector.load {buf.acc}[{row}, {b.index(c * VEC)}] : {types['acc']}, {VF32}")
                initial.append((b.let("o", f"arith.mulf {acc}, {alpha} : {VF32}"), VF32))
        with b.loop(b.index(0), blk.keys, b.index(1), initial) as loop:
            position = b.let("p", f"arith.addi {blk.k0}, {loop.iv} : index")
            values = [_load_chunk(b, d, "%v_cache", cache, f"{position}, {blk.group}, {b.index(c * VEC)}", c)
                      for c in chunks]  # fmt: skip
            for i, row in enumerate(rows):
                p = b.let("p", f"memref.load {buf.scores}[{row}, {loop.iv}] : {types['scores']}")
                pv = b.let("p", f"vector.broadcast {p} : f32 to {VF32}")
                for j, value in enumerate(values):
                    loop.yielded.append(_fma(b, pv, value, loop.args[i * len(values) + j]))
        for i, row in enumerate(rows):
            for j, c in enumerate(chunks):
                result = loop.results[i * len(chunks) + j]
                b.emit(f"vector.store {result}, {buf.acc}[{row}, {b.index(c * VEC)}] : {types['acc']}, {VF32}")


def _store_output(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, out: str) -> None:
    """out[token, head*D:(head+1)*D] = acc / l (rounded to bf16 when `out` is a bf16 memref type)."""
    types = _Buffers.types(d)
    with _tile_rows(b, blk) as (row, head, token):
        total = b.let("l", f"memref.load {buf.stats}[{b.index(1)}, {row}] : {types['stats']}")
        inverse = b.let("l", f"arith.divf {b.f32(1.0)}, {total} : f32")
        inverse = b.let("l", f"vector.broadcast {inverse} : f32 to {VF32}")
        base = b.let("col", f"arith.muli {head}, {b.index(d.head_dim)} : index")
        for chunk in range(d.dim_chunks):
            acc = b.let("o", f"vector.load {buf.acc}[{row}, {b.index(chunk * VEC)}] : {types['acc']}, {VF32}")
            value = b.let("o", f"arith.mulf {acc}, {inverse} : {VF32}")
            col = b.let("col", f"arith.addi {base}, {b.index(chunk * VEC)} : index")
            _store_chunk(b, d, value, "%out", out, f"{token}, {col}", chunk)


def _key_blocks(b: MlirBuilder, d: AttentionDims, buf: _Buffers, blk: _Block, cache: str) -> None:
    """The online-softmax loop over the key blocks a query block can see (later blocks are never visited)."""
    causal_end = b.let("ke", f"arith.addi %past, {blk.t0} : index")
    causal_end = b.let("ke", f"arith.addi {causal_end}, {blk.bq} : index")
    few_rows = b.let("c", f"arith.cmpi ult, {blk.rows}, {b.index(DOT_ROWS)} : index")
    with b.loop(b.index(0), causal_end, b.index(d.block_k)) as key_block:
        left = b.let("nk", f"arith.subi {causal_end}, {key_block.iv} : index")
        keys = b.let("nk", f"arith.minui {left}, {b.index(d.block_k)} : index")
        kb = dataclasses.replace(blk, k0=key_block.iv, keys=keys)
        with b.if_else(few_rows) as otherwise:
            _dot_scores(b, d, buf, kb, cache)
            otherwise()
            _transpose_keys(b, d, buf, kb, cache)
            _row_tiles(b, kb.rows, lambda first, n: _gemm_scores(b, d, buf, first, n))
        _softmax_update(b, d, buf, kb, "%past")
        _row_tiles(b, kb.rows, lambda first, n: _pv_update(b, d, buf, kb, cache, first, n))


def _query_blocks(
    b: MlirBuilder, d: AttentionDims, buf: _Buffers, cache: str, out: str, group: str, first_head: str, heads: str
) -> None:
    """Query blocks of block_q positions of the selected heads of one kv group."""
    tokens = b.let("T", f"memref.dim %qkv, {b.index(0)} : memref<?x{d.qkv_cols}xf32>")
    with b.loop(b.index(0), tokens, b.index(d.block_q)) as query_block:
        left = b.let("bq", f"arith.subi {tokens}, {query_block.iv} : index")
        bq = b.let("bq", f"arith.minui {left}, {b.index(d.block_q)} : index")
        rows = b.let("rows", f"arith.muli {heads}, {bq} : index")
        blk = _Block(group, first_head, heads, query_block.iv, bq, rows)
        _load_queries(b, d, buf, blk)
        _init_rows(b, d, buf, rows)
        _key_blocks(b, d, buf, blk, cache)
        _store_output(b, d, buf, blk, out)


def emit_attention(name: str, d: AttentionDims, cache_dtype: str = "f32", out_dtype: str = "f32") -> str:
    """The attention kernel (see the module docstring): kv groups of the head range, query blocks, key blocks.
    `out_dtype` ("f32" or "bf16") is %out's element type."""
    cache, out = _cache_type(d, cache_dtype), _out_type(d, out_dtype)
    b = MlirBuilder()
    buf = _allocate(b, d)
    group_size = b.index(d.group)
    first_group = b.let("g", f"arith.divui %begin, {group_size} : index")
    last_group = b.let("g", f"arith.ceildivui %end, {group_size} : index")
    with b.loop(first_group, last_group, b.index(1)) as group:
        lo = b.let("hs", f"arith.muli {group.iv}, {group_size} : index")
        hi = b.let("he", f"arith.addi {lo}, {group_size} : index")
        first_head = b.let("hs", f"arith.maxui %begin, {lo} : index")
        end_head = b.let("he", f"arith.minui %end, {hi} : index")
        heads = b.let("nh", f"arith.subi {end_head}, {first_head} : index")
        _query_blocks(b, d, buf, cache, out, group.iv, first_head, heads)
    for memref, type_ in zip((buf.q, buf.acc, buf.scores, buf.kt, buf.stats), _Buffers.types(d).values(), strict=True):
        b.emit(f"memref.dealloc {memref} : {type_}")
    params = (
        f"%qkv: memref<?x{d.qkv_cols}xf32>, %k_cache: {cache}, %v_cache: {cache}, %out: {out}, "
        "%past: index, %begin: index, %end: index"
    )
    return b.function(name, params)

"""The chunked SSD scan of the Mamba-2 mixer (prefill) as an x86 kernel: upstream MLIR text (func, scf, arith,
memref, vector, math) with the model's dimensions baked in and the token count T dynamic. The mixer's other
kernels (conv_silu, ssd_step, gated_rmsnorm) are written once in kernels/mamba.py.

Notation: H heads of P channels, G groups of state size N (head h reads group h // (H/G)), I = H*P, conv channels
C = I + 2*G*N, conv taps K, chunk L. in_proj writes zxbcdt [T, W], W = 2*I + 2*G*N + H: z = cols [0, I),
xBC = [I, I+C) (x = [0, I), B = [I, I+G*N), C = [I+G*N, I+2*G*N) within xBC), dt_raw = [I+C, I+C+H).

The kernel takes the index range [begin, end) of its parallel dimension last, so that the runtime can split one
call over threads on disjoint ranges; arguments are memrefs (MLIR's expanded ABI, see runtime/native.py) and
`index` integers; it returns nothing.

    ssd_scan(zxbcdt, xbc, dt_bias: memref<Hxf32>, A_log: memref<Hxf32>, D: memref<Hxf32>,
             ssm_state: memref<HxPxNx(f32|bf16)>, y: memref<?xIxf32>, begin, end)             range: heads
        Prefill, the chunked SSD of reference.mamba2.ssd_chunked, resuming from ssm_state and writing the final
        state back in place: dt = max(softplus(dt_raw + dt_bias), time_step_min), A = -exp(A_log), and
        y = ssd + D[h] * x. Loop order: group, chunk, head. Per (group, chunk) B^T [N, L] and the lower triangle
        of C·B^T [L, L] are computed once (all heads of a group share them); per head the scores
        S = C·B^T ∘ exp(cum[l] - cum[s]) (only 16-wide blocks on or below the diagonal, entries s > l zeroed
        before and after exp), then y rows = exp(cum[l]) C[l]·state + S·(x dt) + D x, and the state
        state·exp(cum[-1]) + B^T·(x dt exp(cum[-1] - cum)). Each matmul is an outer-product register tile of
        4 rows x up to 4 vector<16xf32> accumulators, vectorised along P (along s for C·B^T). The heads' states of
        one group live transposed ([N, P], f32) in a scratch buffer for the whole call; the cumulative log-decay is
        summed in f64 and kept as an f32 hi/lo pair so that cum[l] - cum[s] keeps its precision.

bf16 states and outputs are stored with round-to-nearest-even and read by widening, both with integer bit
operations (no libcalls: arith.truncf to bf16 becomes a __truncsfbf2 call on the x86-64 baseline); exp in the
vector paths is a Cephes-style polynomial (no libm), scalar f64 exp/log (per token and head only) lower to libm
calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from tessera.lowering.mlir_text import MlirBuilder, bf16_to_f32, f32_to_bf16

LANES = 16  # vector<16xf32>: one 512-bit register
VF32 = f"vector<{LANES}xf32>"
VI32 = f"vector<{LANES}xi32>"
VMASK = f"vector<{LANES}xi1>"
TILE_ROWS = 4  # rows of an outer-product register tile
TILE_VECTORS = 4  # vectors per row of a tile: 4 x 4 accumulators leave registers for the operands
CONTRACT = "fastmath<contract>"  # lets LLVM fuse mul+add into FMA where the CPU has it (separate ops elsewhere)


@dataclass(frozen=True)
class MambaDims:
    num_heads: int
    head_dim: int
    n_groups: int
    state_size: int
    conv_kernel: int
    chunk_size: int
    epsilon: float
    time_step_min: float
    state_dtype: str = "f32"  # or "bf16": ssm_state stored as bfloat16; arithmetic stays f32 within a call
    out_dtype: str = "f32"  # or "bf16": gated_rmsnorm's out stored as bfloat16 (what the out_proj GEMM reads)

    def __post_init__(self) -> None:
        sizes = (self.num_heads, self.head_dim, self.n_groups, self.state_size, self.conv_kernel, self.chunk_size)
        if min(sizes) < 1:
            raise ValueError(f"Mamba dimensions must be positive: {self}")
        if self.num_heads % self.n_groups:
            raise ValueError(f"{self.num_heads} heads do not split into {self.n_groups} groups")
        if (self.num_heads * self.head_dim) % self.n_groups:
            raise ValueError(f"the gated norm's {self.n_groups} groups do not divide {self.num_heads * self.head_dim}")
        if self.state_dtype not in ("f32", "bf16"):
            raise ValueError(f"state_dtype must be 'f32' or 'bf16', not {self.state_dtype!r}")
        if self.out_dtype not in ("f32", "bf16"):
            raise ValueError(f"out_dtype must be 'f32' or 'bf16', not {self.out_dtype!r}")

    @property
    def inner(self) -> int:  # I
        return self.num_heads * self.head_dim

    @property
    def group_state(self) -> int:  # G*N
        return self.n_groups * self.state_size

    @property
    def conv_channels(self) -> int:  # C
        return self.inner + 2 * self.group_state

    @property
    def proj_width(self) -> int:  # W
        return 2 * self.inner + 2 * self.group_state + self.num_heads

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.n_groups


# --- emitting MLIR text -------------------------------------------------------------------------------------------


def _f64(value: float) -> str:
    return f"{value:.17e}"


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Body(MlirBuilder):
    """MlirBuilder with the arithmetic and memory-access shorthands of the Mamba kernels."""

    def comment(self, text: str) -> None:
        self.emit(f"// {text}")

    def op(self, name: str, *operands: str, type_: str) -> str:
        """`name operands : type_` (an op whose operands and result share one type)."""
        return self.let("v", f"{name} {', '.join(operands)} : {type_}")

    def cast(self, name: str, value: str, source: str, target: str) -> str:
        return self.let("v", f"{name} {value} : {source} to {target}")

    def add(self, a: str, b: str, type_: str = "index") -> str:
        op = "arith.addi" if type_ == "index" or "xi" in type_ or type_.startswith("i") else "arith.addf"
        return self.let("v", f"{op} {a}, {b} : {type_}")

    def sub(self, a: str, b: str, type_: str = "index") -> str:
        op = "arith.subi" if type_ == "index" or "xi" in type_ or type_.startswith("i") else "arith.subf"
        return self.let("v", f"{op} {a}, {b} : {type_}")

    def mul(self, a: str, b: str, type_: str = "index") -> str:
        op = "arith.muli" if type_ == "index" or "xi" in type_ or type_.startswith("i") else "arith.mulf"
        return self.let("v", f"{op} {a}, {b} : {type_}")

    def offset(self, base: str, value: int) -> str:
        """base + value (index), with no op when value is 0."""
        return base if value == 0 else self.add(base, self.index(value))

    def fma(self, a: str, b: str, acc: str, type_: str = VF32) -> str:
        product = self.let("v", f"arith.mulf {a}, {b} {CONTRACT} : {type_}")
        return self.let("v", f"arith.addf {product}, {acc} {CONTRACT} : {type_}")

    def splat(self, scalar: str, type_: str = VF32) -> str:
        element = type_.split("x")[-1].rstrip(">")
        return self.let("v", f"vector.broadcast {scalar} : {element} to {type_}")

    def select(self, cond: str, a: str, b: str, type_: str) -> str:
        cond_type = "i1" if not type_.startswith("vector") else f"vector<{LANES}xi1>"
        prefix = "" if cond_type == "i1" else f"{cond_type}, "
        return self.let("v", f"arith.select {cond}, {a}, {b} : {prefix}{type_}")

    def fcmp(self, pred: str, a: str, b: str, type_: str) -> str:
        return self.let("v", f"arith.cmpf {pred}, {a}, {b} : {type_}")

    def min_index(self, a: str, b: str) -> str:
        return self.let("v", f"arith.minsi {a}, {b} : index")

    def load(self, ref: str, indices: list[str], ref_type: str) -> str:
        return self.let("v", f"memref.load {ref}[{', '.join(indices)}] : {ref_type}")

    def store(self, value: str, ref: str, indices: list[str], ref_type: str) -> None:
        self.emit(f"memref.store {value}, {ref}[{', '.join(indices)}] : {ref_type}")

    def vload(self, ref: str, indices: list[str], ref_type: str, mask: str | None = None, type_: str = VF32) -> str:
        """A contiguous vector along the last index; masked lanes read nothing and give 0."""
        where = f"{ref}[{', '.join(indices)}]"
        if mask is None:
            return self.let("v", f"vector.load {where} : {ref_type}, {type_}")
        zero = self.const("0.0", type_)
        return self.let("v", f"vector.maskedload {where}, {mask}, {zero} : {ref_type}, {VMASK}, {type_} into {type_}")

    def vstore(self, value: str, ref: str, indices: list[str], ref_type: str, mask: str | None = None,
               type_: str = VF32) -> None:  # fmt: skip
        where = f"{ref}[{', '.join(indices)}]"
        if mask is None:
            self.emit(f"vector.store {value}, {where} : {ref_type}, {type_}")
        else:
            self.emit(f"vector.maskedstore {where}, {mask}, {value} : {ref_type}, {VMASK}, {type_}")

    def static_mask(self, lanes: int) -> str | None:
        """The mask of the first `lanes` lanes (None when the vector is whole)."""
        return None if lanes >= LANES else self.let("m", f"vector.constant_mask [{lanes}] : {VMASK}")


def _int_type(type_: str) -> str:
    return type_.replace("f32", "i32")


def _exp(b: _Body, x: str, type_: str = VF32) -> str:
    """exp(x) for f32 or vector<16xf32> without libm (Cephes' expf): x = n ln2 + r, exp = 2^n p(r), |r| <= ln2/2.

    Inputs are clamped to [-87.34, 88] so that 2^n stays a normal f32; below -87.34 the result is 0.

    A variant of attention.py's `_exp` (other clamps; x - n ln2 and the last Horner step rounded differently, so
    the last bit can differ). The kernels of kernels/ use tessera-expand-math's typed pattern
    (lowering/math/exp.py exp_cephes, attention.py's op for op); this text copy goes away with the last
    hand-written x86 emitter that calls it.
    """
    lowest, highest = b.f32(-87.33654, type_), b.f32(88.0, type_)
    low = b.fcmp("olt", x, lowest, type_)
    clamped = b.select(low, lowest, x, type_)
    clamped = b.select(b.fcmp("ogt", clamped, highest, type_), highest, clamped, type_)
    # n = round(x / ln2) by the 1.5 * 2^23 trick (no floor instruction needed on the x86-64 baseline).
    magic = b.f32(12582912.0, type_)
    scaled = b.mul(clamped, b.f32(1.44269504088896341, type_), type_)
    n = b.sub(b.add(scaled, magic, type_), magic, type_)
    # r = x - n ln2 with ln2 split in two so that n * hi is exact.
    r = b.sub(clamped, b.mul(n, b.f32(0.693359375, type_), type_), type_)
    r = b.sub(r, b.mul(n, b.f32(-2.12194440e-4, type_), type_), type_)
    coefficients = [
        1.9875691500e-4,
        1.3981999507e-3,
        8.3334519073e-3,
        4.1665795894e-2,
        1.6666665459e-1,
        5.0000001201e-1,
    ]
    poly = b.f32(coefficients[0], type_)
    for coefficient in coefficients[1:]:
        poly = b.fma(poly, r, b.f32(coefficient, type_), type_)
    poly = b.fma(b.mul(poly, r, type_), r, r, type_)
    poly = b.add(poly, b.f32(1.0, type_), type_)
    int_type = _int_type(type_)
    exponent = b.add(b.let("v", f"arith.fptosi {n} : {type_} to {int_type}"), b.const("127", int_type), int_type)
    exponent = b.let("v", f"arith.shli {exponent}, {b.const('23', int_type)} : {int_type}")
    power = b.let("v", f"arith.bitcast {exponent} : {int_type} to {type_}")
    return b.select(low, b.const("0.0", type_), b.mul(poly, power, type_), type_)


def _softplus64(b: _Body, x: str) -> str:
    """softplus in f64 with torch's threshold 20: x above it, else log1p(exp(x)) with log1p(e) computed as
    log(u) * e / (u - 1), u = 1 + e, which keeps full precision for small e (e itself when u rounds to 1)."""
    threshold = b.const(_f64(20.0), "f64")
    e = b.op("math.exp", b.op("arith.minimumf", x, threshold, type_="f64"), type_="f64")
    one = b.const(_f64(1.0), "f64")
    u = b.add(e, one, "f64")
    ratio = b.let("v", f"arith.divf {e}, {b.sub(u, one, 'f64')} : f64")
    log1p = b.mul(b.let("v", f"math.log {u} : f64"), ratio, "f64")
    log1p = b.select(b.fcmp("oeq", u, one, "f64"), e, log1p, "f64")
    return b.select(b.fcmp("ogt", x, threshold, "f64"), x, log1p, "f64")


def _function(name: str, params: list[tuple[str, str]], body: _Body) -> str:
    signature = ", ".join(f"%{param}: {type_}" for param, type_ in params)
    return body.function(name, signature)


@dataclass(frozen=True)
class _Access:
    """Loads along a reduction index k: ref[*before, k (+ base), *after]."""

    ref: str
    type_: str
    before: tuple[str, ...] = ()
    base: str | None = None
    after: tuple[str, ...] = ()

    def indices(self, b: _Body, k: str) -> list[str]:
        return [*self.before, k if self.base is None else b.add(self.base, k), *self.after]


def _outer_product(
    b: _Body, lo: str, hi: str, accumulators: list[list[str]], rows: list[_Access], columns: list[_Access]
) -> list[list[str]]:
    """acc[r][v] += rows[r](k) * columns[v](k) for k in [lo, hi): a register tile of R x V vector accumulators,
    rows[r] a scalar load broadcast to a vector, columns[v] a vector load (V loads + R broadcasts per R*V FMAs)."""
    flat = [acc for row in accumulators for acc in row]
    width = len(accumulators[0])
    with b.loop(lo, hi, b.index(1), [(acc, VF32) for acc in flat]) as loop:
        row_values = [b.splat(b.load(row.ref, row.indices(b, loop.iv), row.type_)) for row in rows]
        column_values = [b.vload(col.ref, col.indices(b, loop.iv), col.type_) for col in columns]
        updated = [
            b.fma(row_values[index // width], column_values[index % width], acc) for index, acc in enumerate(loop.args)
        ]
        loop.yield_(*updated)
    return [loop.results[r * width : (r + 1) * width] for r in range(len(accumulators))]


def _vector_tiles(width: int) -> list[tuple[int, int]]:
    """Split ceil(width / 16) vectors into tiles of at most TILE_VECTORS: [(first vector, count)]."""
    vectors = _ceil_div(width, LANES)
    return [(first, min(TILE_VECTORS, vectors - first)) for first in range(0, vectors, TILE_VECTORS)]


def _row_blocks(b: _Body, lo: str, hi: str, body: Callable[[str, int], None]) -> None:
    """body(first row, R) over [lo, hi): blocks of TILE_ROWS rows, then single rows for the rest."""
    count = b.sub(hi, lo)
    split = b.sub(hi, b.let("v", f"arith.remui {count}, {b.index(TILE_ROWS)} : index"))
    with b.loop(lo, split, b.index(TILE_ROWS)) as blocks:
        body(blocks.iv, TILE_ROWS)
    with b.loop(split, hi, b.index(1)) as rest:
        body(rest.iv, 1)


def _zeros(rows: int, vectors: int, b: _Body) -> list[list[str]]:
    zero = b.const("0.0", VF32)
    return [[zero] * vectors for _ in range(rows)]


def _lane_offsets(b: _Body, stride: int) -> str:
    """The constant vector [0, stride, 2 * stride, ...] of i32."""
    return b.const(f"[{', '.join(str(lane * stride) for lane in range(LANES))}]", VI32)


def _memref(shape: list[int | str], element: str = "f32") -> str:
    return f"memref<{'x'.join(str(dim) for dim in shape)}x{element}>"


# --- ssd_scan / ssd_step shared -----------------------------------------------------------------------------------


def _ssd_params(d: MambaDims) -> list[tuple[str, str]]:
    heads = _memref([d.num_heads])
    state = _memref([d.num_heads, d.head_dim, d.state_size], d.state_dtype)
    return [
        ("zx", _memref(["?", d.proj_width])),
        ("xbc", _memref(["?", d.conv_channels])),
        ("dt_bias", heads),
        ("a_log", heads),
        ("d", heads),
        ("state", state),
        ("y", _memref(["?", d.inner])),
        ("begin", "index"),
        ("end", "index"),
    ]


class _SsdCommon:
    """Types and per-head scalars both SSD kernels need."""

    def __init__(self, d: MambaDims, b: _Body) -> None:
        self.d, self.b = d, b
        self.zx_t, self.xbc_t = _memref(["?", d.proj_width]), _memref(["?", d.conv_channels])
        self.heads_t, self.y_t = _memref([d.num_heads]), _memref(["?", d.inner])
        self.state_t = _memref([d.num_heads, d.head_dim, d.state_size], d.state_dtype)

    def head_scalars(self, head: str) -> tuple[str, str, str]:
        """(A = -exp(A_log[h]) as f64, dt_bias[h] as f64, D[h] as f32)."""
        b = self.b
        a_log = b.let("v", f"arith.extf {b.load('%a_log', [head], self.heads_t)} : f32 to f64")
        a = b.op("arith.negf", b.op("math.exp", a_log, type_="f64"), type_="f64")
        bias = b.let("v", f"arith.extf {b.load('%dt_bias', [head], self.heads_t)} : f32 to f64")
        return a, bias, b.load("%d", [head], self.heads_t)

    def dt(self, token: str, head: str, bias: str) -> str:
        """softplus(dt_raw[t, h] + dt_bias[h]) in f64."""
        b = self.b
        column = b.offset(head, self.d.inner + self.d.conv_channels)
        raw = b.let("v", f"arith.extf {b.load('%zx', [token, column], self.zx_t)} : f32 to f64")
        return _softplus64(b, b.add(raw, bias, "f64"))

    def group_columns(self, group: str) -> tuple[str, str]:
        """xbc columns where group g's B and C start."""
        b, n = self.b, self.d.state_size
        start = b.mul(group, b.index(n))
        return b.offset(start, self.d.inner), b.offset(start, self.d.inner + self.d.group_state)


# --- ssd_scan -----------------------------------------------------------------------------------------------------


def _scan_scratch(d: MambaDims) -> dict[str, str]:
    """Scratch buffers of one ssd_scan call, by name: their memref types (f32 unless said)."""
    chunk, padded_chunk = d.chunk_size, LANES * _ceil_div(d.chunk_size, LANES)
    padded_p = LANES * _ceil_div(d.head_dim, LANES)
    return {
        "st": _memref([d.heads_per_group, d.state_size, padded_p]),  # the group's head states, transposed [N, P]
        "bt": _memref([d.state_size, padded_chunk]),  # B^T of the chunk
        "cb": _memref([chunk, padded_chunk]),  # C·B^T of the chunk (lower triangle of 16-wide blocks)
        "sc": _memref([chunk, padded_chunk]),  # one head's scores C·B^T ∘ decay
        "xs": _memref([chunk, padded_p]),  # x * dt
        "xw": _memref([chunk, padded_p]),  # x * dt * exp(cum[-1] - cum)
        "hi": _memref([padded_chunk]),  # cumulative log-decay, f32 hi part ...
        "lo": _memref([padded_chunk]),  # ... and the f32 remainder
        "cum": _memref([chunk], "f64"),  # cumulative log-decay
        "ecum": _memref([chunk]),  # exp(cum)
        "dts": _memref([chunk]),  # dt
    }


def _bytes(memref_type: str) -> int:
    shape = memref_type[len("memref<") : -1].split("x")
    return math.prod(int(dim) for dim in shape[:-1]) * (8 if shape[-1] == "f64" else 4)


class _ScanEmitter(_SsdCommon):
    """ssd_scan, one method per logical piece; see the module docstring for the algorithm."""

    def __init__(self, d: MambaDims, b: _Body) -> None:
        super().__init__(d, b)
        self.scratch = _scan_scratch(d)
        self.p_tiles = _vector_tiles(d.head_dim)
        self.padded_p = LANES * _ceil_div(d.head_dim, LANES)
        self.tokens = ""  # the SSA name of T, set by body()

    def ref(self, name: str) -> tuple[str, str]:
        return f"%{name}", self.scratch[name]

    def body(self) -> None:
        b, d = self.b, self.d
        c0 = b.index(0)
        self.tokens = b.let("T", f"memref.dim %xbc, {c0} : {self.xbc_t}")
        for name, type_ in self.scratch.items():
            b.emit(f"%{name} = memref.alloc() {{alignment = 64 : i64}} : {type_}")
        b.comment("B^T and the cum hi/lo columns past a partial chunk are read (then masked): keep them finite")
        for name in ("bt", "hi", "lo"):
            self.fill_zero(name)
        per_group = b.index(d.heads_per_group)
        first = b.let("v", f"arith.divui %begin, {per_group} : index")
        last = b.let("v", f"arith.divui {b.add('%end', b.index(d.heads_per_group - 1))}, {per_group} : index")
        last = b.select(b.let("v", "arith.cmpi slt, %begin, %end : index"), last, first, "index")
        with b.loop(first, last, b.index(1)) as group:
            self.group(group.iv)
        for name in self.scratch:
            b.emit(f"memref.dealloc %{name} : {self.scratch[name]}")

    def fill_zero(self, name: str) -> None:
        b = self.b
        ref, type_ = self.ref(name)
        shape = [int(dim) for dim in type_[len("memref<") : -1].split("x")[:-1]]
        zero = b.const("0.0", VF32)
        if len(shape) == 1:
            with b.loop(b.index(0), b.index(shape[0]), b.index(LANES)) as i:
                b.vstore(zero, ref, [i.iv], type_)
            return
        with b.loop(b.index(0), b.index(shape[0]), b.index(1)) as row:
            with b.loop(b.index(0), b.index(shape[1]), b.index(LANES)) as i:
                b.vstore(zero, ref, [row.iv, i.iv], type_)

    def group(self, group: str) -> None:
        b, d = self.b, self.d
        base = b.mul(group, b.index(d.heads_per_group))
        heads = (
            b.let("v", f"arith.maxsi %begin, {base} : index"),
            b.min_index("%end", b.offset(base, d.heads_per_group)),
        )
        b_col, c_col = self.group_columns(group)
        self.move_states(heads, base, load=True)
        with b.loop(b.index(0), self.tokens, b.index(d.chunk_size)) as chunk:
            start = chunk.iv
            length = b.min_index(b.index(d.chunk_size), b.sub(self.tokens, start))
            self.transpose_b(start, length, b_col)
            self.chunk_cb(start, length, c_col)
            with b.loop(heads[0], heads[1], b.index(1)) as head:
                local = b.sub(head.iv, base)
                exp_end = self.head_decay(head.iv, start, length)
                self.scores(length)
                self.outputs(head.iv, local, start, length, c_col)
                self.update_state(local, length, exp_end)
        self.move_states(heads, base, load=False)

    def move_states(self, heads: tuple[str, str], base: str, load: bool) -> None:
        """state[h, p, n] (f32 or bf16) <-> st[h - base, n, p] (f32) for the group's heads in range."""
        b, d = self.b, self.d
        st, st_t = self.ref("st")
        b.comment("load the group's states, transposed to [N, P]" if load else "store the states back")
        with b.loop(heads[0], heads[1], b.index(1)) as head:
            local = b.sub(head.iv, base)
            if load:
                with b.loop(b.index(0), b.index(d.state_size), b.index(1)) as n:
                    for first in range(0, self.padded_p, LANES):
                        b.vstore(b.const("0.0", VF32), st, [local, n.iv, b.index(first)], st_t)
            with b.loop(b.index(0), b.index(d.head_dim), b.index(1)) as p:
                with b.loop(b.index(0), b.index(d.state_size), b.index(1)) as n:
                    if load:
                        value = b.load("%state", [head.iv, p.iv, n.iv], self.state_t)
                        if d.state_dtype == "bf16":
                            value = bf16_to_f32(b, value, "bf16")
                        b.store(value, st, [local, n.iv, p.iv], st_t)
                    else:
                        value = b.load(st, [local, n.iv, p.iv], st_t)
                        if d.state_dtype == "bf16":
                            value = f32_to_bf16(b, value, "f32")
                        b.store(value, "%state", [head.iv, p.iv, n.iv], self.state_t)

    def transpose_b(self, start: str, length: str, b_col: str) -> None:
        b, d = self.b, self.d
        bt, bt_t = self.ref("bt")
        b.comment("bt[n, s] = B[start + s, n]")
        with b.loop(b.index(0), length, b.index(1)) as s:
            token = b.add(start, s.iv)
            with b.loop(b.index(0), b.index(d.state_size), b.index(1)) as n:
                value = b.load("%xbc", [token, b.add(b_col, n.iv)], self.xbc_t)
                b.store(value, bt, [n.iv, s.iv], bt_t)

    def c_rows(self, start: str, l0: str, rows: int, c_col: str) -> list[_Access]:
        """C[start + l0 + r, n] along n, for r < rows."""
        return [_Access("%xbc", self.xbc_t, (self.b.add(start, self.b.offset(l0, r)),), c_col) for r in range(rows)]

    def chunk_cb(self, start: str, length: str, c_col: str) -> None:
        """cb[l, s] = C[l]·B[s] for the 16-wide s blocks at or left of l's (the heads of the group share it)."""
        b, d = self.b, self.d
        cb, cb_t = self.ref("cb")
        bt, bt_t = self.ref("bt")

        def row_block(l0: str, rows: int) -> None:
            # Rows of a TILE_ROWS block lie in one 16-wide block (l0 is a multiple of 4): same s blocks.
            blocks = b.add(b.let("v", f"arith.divui {l0}, {b.index(LANES)} : index"), b.index(1))
            split = b.sub(blocks, b.let("v", f"arith.remui {blocks}, {b.index(TILE_VECTORS)} : index"))
            c_rows = self.c_rows(start, l0, rows, c_col)
            for lo, hi, width in ((b.index(0), split, TILE_VECTORS), (split, blocks, 1)):
                with b.loop(lo, hi, b.index(width)) as block:
                    columns = [b.mul(b.offset(block.iv, v), b.index(LANES)) for v in range(width)]
                    tile = _outer_product(
                        b, b.index(0), b.index(d.state_size), _zeros(rows, width, b),
                        c_rows, [_Access(bt, bt_t, after=(col,)) for col in columns],
                    )  # fmt: skip
                    for r, accs in enumerate(tile):
                        for col, acc in zip(columns, accs, strict=True):
                            b.vstore(acc, cb, [b.offset(l0, r), col], cb_t)

        b.comment("C·B^T, lower triangle")
        _row_blocks(b, b.index(0), length, row_block)

    def head_decay(self, head: str, start: str, length: str) -> str:
        """dt, cumulative log-decay (f64, hi/lo, exp), x*dt and x*dt*exp(cum[-1] - cum); returns exp(cum[-1])."""
        b, d = self.b, self.d
        a, bias, _ = self.head_scalars(head)
        refs = {name: self.ref(name) for name in ("cum", "hi", "lo", "ecum", "dts", "xs", "xw")}
        floor = b.const(_f64(d.time_step_min), "f64")
        b.comment("dt = max(softplus(dt_raw + dt_bias), time_step_min); cum = cumsum(dt * A) in f64")
        with b.loop(b.index(0), length, b.index(1), [(b.const(_f64(0.0), "f64"), "f64")]) as row:
            dt = self.dt(b.add(start, row.iv), head, bias)
            dt = b.select(b.fcmp("olt", dt, floor, "f64"), floor, dt, "f64")
            cum = b.add(row.args[0], b.mul(dt, a, "f64"), "f64")
            hi = b.let("v", f"arith.truncf {cum} : f64 to f32")
            lo = b.cast("arith.truncf", b.sub(cum, b.cast("arith.extf", hi, "f32", "f64"), "f64"), "f64", "f32")
            dt32 = b.let("v", f"arith.truncf {dt} : f64 to f32")
            for name, value in (("cum", cum), ("hi", hi), ("lo", lo), ("ecum", _exp(b, hi, "f32")), ("dts", dt32)):
                ref, type_ = refs[name]
                b.store(value, ref, [row.iv], type_)
            row.yield_(cum)
        total = row.results[0]
        b.comment("xs = x * dt, xw = xs * exp(cum[-1] - cum)")
        with b.loop(b.index(0), length, b.index(1)) as row:
            to_end = b.sub(total, b.load(refs["cum"][0], [row.iv], refs["cum"][1]), "f64")
            weight = b.splat(_exp(b, b.let("v", f"arith.truncf {to_end} : f64 to f32"), "f32"))
            dt = b.splat(b.load(refs["dts"][0], [row.iv], refs["dts"][1]))
            token, head_col = b.add(start, row.iv), b.mul(head, b.index(d.head_dim))
            for first in range(0, self.padded_p, LANES):
                mask = b.static_mask(d.head_dim - first)
                x = b.vload("%xbc", [token, b.offset(head_col, first)], self.xbc_t, mask)
                xs = b.mul(x, dt, VF32)
                b.vstore(xs, refs["xs"][0], [row.iv, b.index(first)], refs["xs"][1])
                b.vstore(b.mul(xs, weight, VF32), refs["xw"][0], [row.iv, b.index(first)], refs["xw"][1])
        return _exp(b, b.let("v", f"arith.truncf {total} : f64 to f32"), "f32")

    def scores(self, length: str) -> None:
        """sc[l, s] = cb[l, s] * exp(cum[l] - cum[s]) for s <= l, 0 for s > l (exp of 0 there, never of the
        positive difference), over the 16-wide blocks at or left of l's."""
        b = self.b
        (hi, hi_t), (lo, lo_t), (cb, cb_t), (sc, sc_t) = (self.ref(n) for n in ("hi", "lo", "cb", "sc"))
        iota = _lane_offsets(b, 1)
        zero = b.const("0.0", VF32)
        b.comment("scores = C·B^T ∘ exp(segment sums), causal")
        with b.loop(b.index(0), length, b.index(1)) as row:
            l = row.iv  # noqa: E741
            row_hi, row_lo = b.splat(b.load(hi, [l], hi_t)), b.splat(b.load(lo, [l], lo_t))
            row_index = b.splat(b.let("v", f"arith.index_cast {l} : index to i32"), VI32)
            blocks = b.add(b.let("v", f"arith.divui {l}, {b.index(LANES)} : index"), b.index(1))
            with b.loop(b.index(0), blocks, b.index(1)) as block:
                col = b.mul(block.iv, b.index(LANES))
                lanes = b.add(b.splat(b.let("v", f"arith.index_cast {col} : index to i32"), VI32), iota, VI32)
                causal = b.let("v", f"arith.cmpi sle, {lanes}, {row_index} : {VI32}")
                # (hi_l - hi_s) + (lo_l - lo_s): each difference is rounded relative to itself, not to |cum|.
                diff = b.add(
                    b.sub(row_hi, b.vload(hi, [col], hi_t), VF32), b.sub(row_lo, b.vload(lo, [col], lo_t), VF32), VF32
                )
                decay = _exp(b, b.select(causal, diff, zero, VF32))
                score = b.mul(b.vload(cb, [l, col], cb_t), decay, VF32)
                b.vstore(b.select(causal, score, zero, VF32), sc, [l, col], sc_t)

    def outputs(self, head: str, local: str, start: str, length: str, c_col: str) -> None:
        """y[l] = exp(cum[l]) C[l]·state + sum_{s<=l} sc[l, s] xs[s] + D x[l], in R-row x 4-vector tiles."""
        b, d = self.b, self.d
        (st, st_t), (sc, sc_t), (xs, xs_t), (ecum, ecum_t) = (self.ref(n) for n in ("st", "sc", "xs", "ecum"))
        d_h = b.splat(b.load("%d", [head], self.heads_t))
        head_col = b.mul(head, b.index(d.head_dim))

        def row_block(l0: str, rows: int) -> None:
            c_rows = self.c_rows(start, l0, rows, c_col)
            for first, count in self.p_tiles:
                cols = [b.index(LANES * (first + v)) for v in range(count)]
                tile = _outer_product(
                    b, b.index(0), b.index(d.state_size), _zeros(rows, count, b),
                    c_rows, [_Access(st, st_t, (local,), after=(col,)) for col in cols],
                )  # fmt: skip
                decays = [b.splat(b.load(ecum, [b.offset(l0, r)], ecum_t)) for r in range(rows)]
                tile = [[b.mul(acc, decay, VF32) for acc in accs] for accs, decay in zip(tile, decays, strict=True)]
                tile = _outer_product(
                    b, b.index(0), b.offset(l0, rows), tile,
                    [_Access(sc, sc_t, (b.offset(l0, r),)) for r in range(rows)],
                    [_Access(xs, xs_t, after=(col,)) for col in cols],
                )  # fmt: skip
                for r, accs in enumerate(tile):
                    token = b.add(start, b.offset(l0, r))
                    for v, acc in enumerate(accs):
                        channel = LANES * (first + v)
                        mask = b.static_mask(d.head_dim - channel)
                        column = b.offset(head_col, channel)
                        x = b.vload("%xbc", [token, column], self.xbc_t, mask)
                        b.vstore(b.fma(d_h, x, acc), "%y", [token, column], self.y_t, mask)

        b.comment("outputs: state entering the chunk, then the causal intra-chunk matmul, then D x")
        _row_blocks(b, b.index(0), length, row_block)

    def update_state(self, local: str, length: str, exp_end: str) -> None:
        """st[n, p] = exp(cum[-1]) st[n, p] + sum_s bt[n, s] xw[s, p], in R-row x 4-vector tiles."""
        b, d = self.b, self.d
        (st, st_t), (bt, bt_t), (xw, xw_t) = (self.ref(n) for n in ("st", "bt", "xw"))
        decay = b.splat(exp_end)

        def row_block(n0: str, rows: int) -> None:
            for first, count in self.p_tiles:
                cols = [b.index(LANES * (first + v)) for v in range(count)]
                tile = [[b.mul(b.vload(st, [local, b.offset(n0, r), col], st_t), decay, VF32) for col in cols]
                        for r in range(rows)]  # fmt: skip
                tile = _outer_product(
                    b, b.index(0), length, tile,
                    [_Access(bt, bt_t, (b.offset(n0, r),)) for r in range(rows)],
                    [_Access(xw, xw_t, after=(col,)) for col in cols],
                )  # fmt: skip
                for r, accs in enumerate(tile):
                    for col, acc in zip(cols, accs, strict=True):
                        b.vstore(acc, st, [local, b.offset(n0, r), col], st_t)

        b.comment("state leaving the chunk")
        _row_blocks(b, b.index(0), b.index(d.state_size), row_block)


def emit_ssd_scan(name: str, d: MambaDims) -> str:
    """Prefill: the chunked SSD over heads [begin, end) (see the module docstring for the ABI and algorithm)."""
    b = _Body()
    _ScanEmitter(d, b).body()
    return _function(name, _ssd_params(d), b)


# --- footprints ---------------------------------------------------------------------------------------------------


def footprint_bytes(kind: str, d: MambaDims) -> int:
    """Fast-memory bytes ssd_scan keeps live per call (per thread): its scratch buffers (group states
    [H/G, N, P], B^T, C·B^T, scores, x tiles, decay columns)."""
    if kind != "ssd_scan":
        raise ValueError(f"unknown Mamba kernel kind {kind!r} (ssd_scan; the others are written in kernels/)")
    return sum(_bytes(type_) for type_ in _scan_scratch(d).values())

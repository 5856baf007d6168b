"""The AMX variant of the x86 GEMM (kernels/gemm.py): bf16 products on AMX tiles, f32 accumulation.

`emit_gemm_amx(name, spec, nr)` writes `func.func @{name}__amx` with the SAME arguments and [begin, end)
panel semantics as the x86 lowering of kernels/gemm.py's matmul with `tiles.nr == nr`, so that the runtime may call
either with the same buffers, except the weight, which the AMX kernel reads packed as VNNI tiles:

    %w: memref<P x R x 32 x bf16>    amx_weight_shape(spec) = (ceil(N/16), ceil(K/32) * 16, 32)
    w[p, r, 2j + t] = bf16(W[16p + j, 2r + t])   (= W[16p + j, 32 (r // 16) + 2 (r % 16) + t]), zero past N, K

so that rows [16 kb, 16 kb + 16) of panel p are the 16 x 64-byte B tile that `tdpbf16ps` reads for the
output columns [16p, 16p + 16) and k in [32 kb, 32 kb + 32) (one row = one pair of k for 16 columns).
For m < M and n in [begin*nr, min(end*nr, N)):
    acc = row_scale[m] * sum_k bf16(x[m, k]) * bf16(W[n, k]) + bias[n], in f32 (products exact)
    "store": y = acc;  "accumulate": y += acc;  "relu2": y = max(acc, 0)^2     (bf16 y rounded to nearest even)
with an f32 x rounded to bf16 to nearest even (weights.bf16_bits, bit for bit); nothing else of y is touched.
spec.weight_dtype is not read: the AMX weight is bf16 whatever the x86 kernel's is.

Algorithm, one call (panels [begin, end) of nr columns = AMX panels [begin*nr/16, min(end*nr/16, P))):

    for m0 in 0..M step G:                      row group of G rows (group_rows: its scratch <= 1 MiB)
      stage x[m0:m0+G] as bf16 into the stack scratch [G, lda]: rows past M and k in [K, Kp) zero,
      Kp = ceil(K/32)*32 (lda = Kp, or Kp + 32 when 2 Kp bytes is an even multiple of 64, so that the 16
      rows of an A tile fall in 16 different L1 sets), so that no tile load ever reads out of bounds
      for each pair of 16-column panels (then the odd last panel):
        for each pair of 16-row blocks of the group (then the odd last block):
          C[i][j] = tile_zero; for kb in 0..Kp/32: A_i = tile_load scratch[16i.., 32kb..],
                   B_j = tile_load w[p+j, 16kb.., 0]; C[i][j] = tile_mulf(A_i, B_j, C[i][j])
          each C[i][j]: tile_store to a 16x16 f32 scratch, then the epilogue row by row (vector<16xf32>),
          rows < M only, y columns past N masked.

Tile-register plan (AMX has 8 tile registers, tmm0-7, each 16 rows x 64 bytes): 2 A x 2 B -> 4 C, a
32 x 32 block of y per K loop, 4 tile loads per 4 tdpbf16ps (1 x 4 needs 5 loads per 4; 2 x 3 or 3 x 2
would need 6 C + 5 inputs). The K loop's body is ordered A0, B0, C00, B1, C01, A1, C10, C11 so that at
most 7 tiles are live (A0 dies before A1 loads): no tile is spilled (test_x86_amx checks the K loops). The edges
of the row group / panel range use 1 x 2, 2 x 1 and 1 x 1 blocks of the same form. A group's panel pair
(Kp x 32 bf16) stays in L2 while the group's row blocks pass it; the group's scratch is reused from L2
by every panel pair.

The four tile operations come from a `TileOps` strategy: `AMX_TILES` writes MLIR 22's amx dialect
(lowered by AMX_LLVM_PIPELINE, compiled for a CPU with +amx-tile,+amx-bf16, e.g. LLVM's "sapphirerapids";
LLVM's X86 back end inserts ldtilecfg/tilerelease for the `.internal` intrinsics); `EMULATED_TILES` writes
the same operations as loops over stack buffers with the documented AMX semantics, so that everything
else (staging, indices, epilogue, loops) is tested numerically on a CPU without AMX.

The kernel keeps `G * lda * 2 + 1 KiB` bytes of stack (about 1 MiB; 1.3 MiB for K = 20480): a thread
that calls it needs more than that (Linux's default 8 MiB thread stacks have it). The process must hold
AMX tile-data permission (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), once per process) before
its first call, or the first tile instruction faults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tessera.lowering.mlir_text import MlirBuilder, bf16_to_f32, f32_to_bf16_bits
from tessera.runtime.weights import bf16_to_f32 as widen_bf16_bits
from tessera.runtime.weights import pack_amx_vnni
from tessera.tiling.x86_gemm import VECTOR, GemmSpec

TILE_ROWS = 16  # rows of every tile (A, B and C)
TILE_K = 32  # bf16 values in one 64-byte tile row: the k depth of one tdpbf16ps
PANEL = 16  # output columns of one C tile and of one packed weight panel
A_TILES = 2  # row blocks per K loop (2 A x 2 B -> 4 C: the 8 tile registers)
B_TILES = 2  # panels per K loop
SCRATCH_BYTES = 1 << 20  # the staged row group: at most this much stack where K allows 32 rows
MAX_GROUP_ROWS = 128

TILE_A = f"!amx.tile<{TILE_ROWS}x{TILE_K}xbf16>"
TILE_C = f"!amx.tile<{TILE_ROWS}x{PANEL}xf32>"
VEC = f"vector<{VECTOR}xf32>"
C_BUFFER = f"memref<{TILE_ROWS}x{PANEL}xf32>"  # a C tile in memory (the epilogue's scratch)
INPUT_BUFFER = f"memref<{TILE_ROWS}x{TILE_K}xbf16>"  # an A or B tile in memory (emulation)


def amx_weight_shape(spec: GemmSpec) -> tuple[int, int, int]:
    """The packed weight the AMX kernel reads: [ceil(N/16), ceil(K/32) * 16, 32] bf16."""
    return (-(-spec.n // PANEL), -(-spec.k // TILE_K) * TILE_ROWS, TILE_K)


def pack_weight_amx(weight: np.ndarray, spec: GemmSpec) -> np.ndarray:
    """W[N, K] (float32, or bfloat16 bits as uint16) -> the "amx_vnni" packing, uint16 of amx_weight_shape:
    packed[p, r, 2j + t] = bf16(W[16p + j, 2r + t]), zero past N and K, 64-byte aligned (the runtime's
    weights.pack_amx_vnni, which reads nothing of the compiler). bf16 input is kept bit for bit (NaN quiet)."""
    if weight.shape != (spec.n, spec.k):
        raise ValueError(f"weight shape {weight.shape} does not match the GEMM ({spec.n}, {spec.k})")
    values = widen_bf16_bits(weight) if weight.dtype == np.uint16 else np.asarray(weight, np.float32)
    packed = pack_amx_vnni(values)
    assert packed.shape == amx_weight_shape(spec)
    return packed


def group_rows(spec: GemmSpec) -> int:
    """Rows of x staged at once: a multiple of 2 x 16, as many as fit SCRATCH_BYTES (32 at least)."""
    row_bytes = _leading_dimension(spec) * 2
    fit = SCRATCH_BYTES // row_bytes // (A_TILES * TILE_ROWS) * (A_TILES * TILE_ROWS)
    return max(A_TILES * TILE_ROWS, min(MAX_GROUP_ROWS, fit))


def _padded_k(spec: GemmSpec) -> int:
    return -(-spec.k // TILE_K) * TILE_K


def _leading_dimension(spec: GemmSpec) -> int:
    """The scratch's row length in bf16: Kp, plus one cache line where 2 Kp bytes is an even number of
    lines (rows 4 KiB apart would put an A tile's 16 rows in one or two L1 sets)."""
    kp = _padded_k(spec)
    return kp if (kp * 2 // 64) % 2 else kp + TILE_K


# --------------------------------------------------------------------------------------------------
# The tile operations


class KernelBuilder(MlirBuilder):
    """MlirBuilder with stack buffers allocated once, in the entry block (an alloca in a loop would grow
    the stack on every iteration)."""

    def __init__(self) -> None:
        super().__init__()
        self.entry: list[str] = []

    def alloca(self, hint: str, type_: str) -> str:
        name = self.fresh(hint)
        self.entry.append(f"  {name} = memref.alloca() {{alignment = 64 : i64}} : {type_}")
        return name

    def function(self, name: str, params: str) -> str:
        self.lines[:0] = self.entry
        self.entry = []
        return super().function(name, params)


class TileOps(Protocol):
    """The four AMX tile operations, on 16 x 32 bf16 input tiles and 16 x 16 f32 accumulators."""

    @property
    def accumulator(self) -> str:
        """The type of a C tile value (what the K loop carries)."""
        ...

    def zero(self, b: KernelBuilder) -> str: ...

    def load(self, b: KernelBuilder, source: str, source_type: str, indices: Sequence[str]) -> str:
        """16 rows of 64 bytes (32 bf16) from source[indices]: rows along the second-last dimension."""
        ...

    def mulf(self, b: KernelBuilder, a: str, w: str, acc: str) -> str:
        """acc += a (16 x 32 bf16, k pairs per row) x w (16 rows of k pairs, VNNI): tdpbf16ps."""
        ...

    def store(self, b: KernelBuilder, acc: str, target: str, target_type: str, indices: Sequence[str]) -> None: ...


@dataclass(frozen=True)
class AmxTiles:
    """MLIR 22's amx dialect: tile_zero / tile_load / tile_mulf / tile_store (tilezero, tileloadd,
    tdpbf16ps, tilestored)."""

    accumulator: str = TILE_C

    def zero(self, b: KernelBuilder) -> str:
        return b.let("c", f"amx.tile_zero : {TILE_C}")

    def load(self, b: KernelBuilder, source: str, source_type: str, indices: Sequence[str]) -> str:
        return b.let("t", f"amx.tile_load {source}[{', '.join(indices)}] : {source_type} into {TILE_A}")

    def mulf(self, b: KernelBuilder, a: str, w: str, acc: str) -> str:
        return b.let("c", f"amx.tile_mulf {a}, {w}, {acc} : {TILE_A}, {TILE_A}, {TILE_C}")

    def store(self, b: KernelBuilder, acc: str, target: str, target_type: str, indices: Sequence[str]) -> None:
        b.emit(f"amx.tile_store {target}[{', '.join(indices)}], {acc} : {target_type}, {TILE_C}")


@dataclass(frozen=True)
class EmulatedTiles:
    """The tile operations as loops over stack buffers (one per call site: a tile register), with the
    semantics of Intel's SDM for TDPBF16PS: per row m of C, two f32 partial sums per column n start at
    zero, temp[2n + t] += A[m][2p + t] * B[p][2n + t] for p = 0..15 in order (FMA, round to nearest even;
    the product of two bf16 is exact in f32, so an FMA and a multiply-add round alike), then
    C[m][n] += temp[2n] + temp[2n + 1]: the even and odd products accumulate apart and meet before the
    add to C. (The intrinsics guide's older text accumulates both straight into C in turn; the sums differ
    only in f32 rounding.) Not emulated: the hardware's DAZ/FTZ (it flushes denormal inputs and results,
    below 2^-126, to zero; this code keeps them)."""

    accumulator: str = C_BUFFER

    def zero(self, b: KernelBuilder) -> str:
        buffer = b.alloca("ctile", C_BUFFER)
        zero = b.const("0.0", VEC)
        with b.loop(b.index(0), b.index(TILE_ROWS), b.index(1)) as row:
            b.emit(f"vector.store {zero}, {buffer}[{row.iv}, {b.index(0)}] : {C_BUFFER}, {VEC}")
        return buffer

    def load(self, b: KernelBuilder, source: str, source_type: str, indices: Sequence[str]) -> str:
        buffer = b.alloca("itile", INPUT_BUFFER)
        row_type = f"vector<{TILE_K}xbf16>"
        with b.loop(b.index(0), b.index(TILE_ROWS), b.index(1)) as row:
            at = [*indices[:-2], b.let("tr", f"arith.addi {indices[-2]}, {row.iv} : index"), indices[-1]]
            values = b.let("tv", f"vector.load {source}[{', '.join(at)}] : {source_type}, {row_type}")
            b.emit(f"vector.store {values}, {buffer}[{row.iv}, {b.index(0)}] : {INPUT_BUFFER}, {row_type}")
        return buffer

    def mulf(self, b: KernelBuilder, a: str, w: str, acc: str) -> str:
        c0, c1 = b.index(0), b.index(1)
        i32 = f"vector<{VECTOR}xi32>"
        zero = b.const("0.0", VEC)
        with b.loop(c0, b.index(TILE_ROWS), c1) as m:
            with b.loop(c0, b.index(TILE_K // 2), c1, [(zero, VEC), (zero, VEC)]) as pair:
                even_k = b.let("k", f"arith.muli {pair.iv}, {b.index(2)} : index")
                odd_k = b.let("k", f"arith.addi {even_k}, {c1} : index")
                a_even, a_odd = (
                    b.let("ab", f"vector.broadcast {self._widen(b, a, m.iv, k)} : f32 to {VEC}")
                    for k in (even_k, odd_k)
                )
                row = b.let("wr", f"vector.load {w}[{pair.iv}, {c0}] : {INPUT_BUFFER}, vector<{TILE_K}xbf16>")
                halves = b.let("wh", f"arith.bitcast {row} : vector<{TILE_K}xbf16> to vector<{TILE_K}xi16>")
                pairs = b.let("wp", f"vector.bitcast {halves} : vector<{TILE_K}xi16> to {i32}")
                # Little-endian: element 2n is the low half of dword n, element 2n + 1 the high half.
                low = b.let("we", f"arith.shli {pairs}, {b.const('16', i32)} : {i32}")
                high = b.let("wo", f"arith.andi {pairs}, {b.const('-65536', i32)} : {i32}")
                w_even, w_odd = (b.let("wf", f"arith.bitcast {bits} : {i32} to {VEC}") for bits in (low, high))
                even, odd = pair.args
                pair.yield_(
                    b.let("te", f"vector.fma {a_even}, {w_even}, {even} : {VEC}"),
                    b.let("to", f"vector.fma {a_odd}, {w_odd}, {odd} : {VEC}"),
                )
            total = b.let("ts", f"arith.addf {pair.results[0]}, {pair.results[1]} : {VEC}")
            old = b.let("co", f"vector.load {acc}[{m.iv}, {c0}] : {C_BUFFER}, {VEC}")
            new = b.let("cn", f"arith.addf {old}, {total} : {VEC}")
            b.emit(f"vector.store {new}, {acc}[{m.iv}, {c0}] : {C_BUFFER}, {VEC}")
        return acc

    @staticmethod
    def _widen(b: KernelBuilder, tile: str, row: str, column: str) -> str:
        value = b.let("av", f"memref.load {tile}[{row}, {column}] : {INPUT_BUFFER}")
        return bf16_to_f32(b, value, "bf16")

    def store(self, b: KernelBuilder, acc: str, target: str, target_type: str, indices: Sequence[str]) -> None:
        with b.loop(b.index(0), b.index(TILE_ROWS), b.index(1)) as row:
            values = b.let("cv", f"vector.load {acc}[{row.iv}, {b.index(0)}] : {C_BUFFER}, {VEC}")
            at = [*indices[:-2], b.let("tr", f"arith.addi {indices[-2]}, {row.iv} : index"), indices[-1]]
            b.emit(f"vector.store {values}, {target}[{', '.join(at)}] : {target_type}, {VEC}")


AMX_TILES = AmxTiles()
EMULATED_TILES = EmulatedTiles()


# --------------------------------------------------------------------------------------------------
# The kernel


@dataclass(frozen=True)
class _Kernel:
    spec: GemmSpec
    nr: int
    tiles: TileOps

    @property
    def panels(self) -> int:
        return amx_weight_shape(self.spec)[0]

    @property
    def x_type(self) -> str:
        return f"memref<?x{self.spec.k}x{self.spec.x_dtype}>"

    @property
    def w_type(self) -> str:
        return f"memref<{'x'.join(map(str, amx_weight_shape(self.spec)))}xbf16>"

    @property
    def y_type(self) -> str:
        return f"memref<?x{self.spec.n}x{self.spec.y_dtype}>"

    @property
    def scratch_type(self) -> str:
        return f"memref<{group_rows(self.spec)}x{_leading_dimension(self.spec)}xbf16>"

    @property
    def in_bounds(self) -> str:
        """Whether every 16-column access to y and bias is in bounds (else masked at N)."""
        return "true" if self.spec.n % PANEL == 0 else "false"

    def arguments(self) -> str:
        """gemm._Kernel.arguments with the AMX weight type."""
        args = [f"%x: {self.x_type}", f"%w: {self.w_type}"]
        if self.spec.bias:
            args.append(f"%bias: memref<{self.spec.n}xf32>")
        if self.spec.row_scale:
            args.append("%row_scale: memref<?xf32>")
        return ", ".join([*args, f"%y: {self.y_type}", "%begin: index", "%end: index"])


@dataclass(frozen=True)
class _Group:
    """SSA values of the row group that the tile blocks read."""

    scratch: str  # the staged rows, [G, lda] bf16
    c_tile: str  # a C tile's f32 scratch for the epilogue
    m0: str  # first row of the group
    mlen: str  # rows of the group (<= G)
    blocks: str  # 16-row blocks staged, ceil(mlen / 16)


def emit_gemm_amx(name: str, spec: GemmSpec, nr: int, tiles: TileOps = AMX_TILES) -> str:
    """MLIR text of `func.func @{name}__amx`: the GEMM on AMX tiles (or `tiles`), for callers that split
    the work in panels of `nr` columns like gemm.emit_gemm (ABI and algorithm in the module docstring)."""
    if nr < PANEL or nr % PANEL:
        raise ValueError(f"nr must be a positive multiple of {PANEL}, got {nr}")
    kn = _Kernel(spec, nr, tiles)
    b = KernelBuilder()
    _emit_body(b, kn)
    return b.function(f"{name}__amx", kn.arguments())


def _emit_body(b: KernelBuilder, kn: _Kernel) -> None:
    c0, c1, c2 = b.index(0), b.index(1), b.index(2)
    rows = b.let("m", f"memref.dim %x, {c0} : {kn.x_type}")
    per_panel = b.index(kn.nr // PANEL)
    first = b.let("p", f"arith.muli %begin, {per_panel} : index")
    stop = b.let("p", f"arith.muli %end, {per_panel} : index")
    stop = b.let("p", f"arith.minui {stop}, {b.index(kn.panels)} : index")
    stop = b.let("p", f"arith.maxui {stop}, {first} : index")  # begin >= end or past N: no panel
    count = b.let("np", f"arith.subi {stop}, {first} : index")
    live = b.let("live", f"arith.cmpi ne, {count}, {c0} : index")
    rows = b.let("m", f"arith.select {live}, {rows}, {c0} : index")  # no panel: stage nothing either
    pairs = b.let("pairs", f"arith.divui {count}, {c2} : index")
    odd_panel = b.let("podd", f"arith.remui {count}, {c2} : index")
    odd_panel = b.let("podd", f"arith.cmpi ne, {odd_panel}, {c0} : index")
    scratch = b.alloca("xs", kn.scratch_type)
    c_tile = b.alloca("cs", C_BUFFER)
    group = group_rows(kn.spec)
    with b.loop(c0, rows, b.index(group)) as loop:
        left = b.let("mrem", f"arith.subi {rows}, {loop.iv} : index")
        mlen = b.let("mlen", f"arith.minui {left}, {b.index(group)} : index")
        padded = b.let("mpad", f"arith.addi {mlen}, {b.index(TILE_ROWS - 1)} : index")
        blocks = b.let("blocks", f"arith.divui {padded}, {b.index(TILE_ROWS)} : index")
        g = _Group(scratch, c_tile, loop.iv, mlen, blocks)
        _emit_staging(b, kn, g)
        with b.loop(c0, pairs, c1) as pair:
            offset = b.let("po", f"arith.muli {pair.iv}, {c2} : index")
            _emit_panels(b, kn, g, b.let("p", f"arith.addi {first}, {offset} : index"), B_TILES)
        with b.if_else(odd_panel):
            _emit_panels(b, kn, g, b.let("p", f"arith.subi {stop}, {c1} : index"), 1)


def _emit_staging(b: KernelBuilder, kn: _Kernel, g: _Group) -> None:
    """scratch[r, k] = bf16(x[m0 + r, k]) for r < mlen, k < K; zero for k in [K, Kp) and for the rows
    [mlen, 16 blocks) that the group's last tile reads."""
    spec, c0, c1, step = kn.spec, b.index(0), b.index(1), b.index(VECTOR)
    kp, whole = _padded_k(spec), spec.k // VECTOR * VECTOR
    half = f"vector<{VECTOR}xbf16>"
    with b.loop(c0, g.mlen, c1) as r:
        row = b.let("xr", f"arith.addi {g.m0}, {r.iv} : index")
        if whole:
            with b.loop(c0, b.index(whole), step) as k:
                values = b.let("xv", f"vector.load %x[{row}, {k.iv}] : {kn.x_type}, vector<{VECTOR}x{spec.x_dtype}>")
                if spec.x_dtype == "f32":
                    bits = f32_to_bf16_bits(b, values, VEC, quiet_nan=True)
                    values = b.let("xh", f"arith.bitcast {bits} : vector<{VECTOR}xi16> to {half}")
                b.emit(f"vector.store {values}, {g.scratch}[{r.iv}, {k.iv}] : {kn.scratch_type}, {half}")
        if whole < spec.k:  # the last k % 16 values one by one (no masked bf16 accesses)
            with b.loop(b.index(whole), b.index(spec.k), c1) as k:
                value = b.let("xs", f"memref.load %x[{row}, {k.iv}] : {kn.x_type}")
                if spec.x_dtype == "f32":
                    bits = f32_to_bf16_bits(b, value, "f32", quiet_nan=True)
                    value = b.let("xh", f"arith.bitcast {bits} : i16 to bf16")
                b.emit(f"memref.store {value}, {g.scratch}[{r.iv}, {k.iv}] : {kn.scratch_type}")
        if spec.k < kp:
            with b.loop(b.index(spec.k), b.index(kp), c1) as k:
                b.emit(f"memref.store {b.const('0.0', 'bf16')}, {g.scratch}[{r.iv}, {k.iv}] : {kn.scratch_type}")
    staged = b.let("staged", f"arith.muli {g.blocks}, {b.index(TILE_ROWS)} : index")
    with b.loop(g.mlen, staged, c1) as r:
        with b.loop(c0, b.index(kp), step) as k:
            b.emit(f"vector.store {b.const('0.0', half)}, {g.scratch}[{r.iv}, {k.iv}] : {kn.scratch_type}, {half}")


def _emit_panels(b: KernelBuilder, kn: _Kernel, g: _Group, panel: str, panels: int) -> None:
    """The group's rows for `panels` panels from `panel`: pairs of 16-row blocks, then the odd last one."""
    c0, c1, c2 = b.index(0), b.index(1), b.index(2)
    pairs = b.let("rpairs", f"arith.divui {g.blocks}, {c2} : index")
    with b.loop(c0, pairs, c1) as pair:
        r0 = b.let("r0", f"arith.muli {pair.iv}, {b.index(A_TILES * TILE_ROWS)} : index")
        _emit_tile_block(b, kn, g, r0, A_TILES, panel, panels)
    odd = b.let("rodd", f"arith.remui {g.blocks}, {c2} : index")
    with b.if_else(b.let("rodd", f"arith.cmpi ne, {odd}, {c0} : index")):
        last = b.let("rl", f"arith.subi {g.blocks}, {c1} : index")
        _emit_tile_block(b, kn, g, b.let("r0", f"arith.muli {last}, {b.index(TILE_ROWS)} : index"), 1, panel, panels)


def _emit_tile_block(b: KernelBuilder, kn: _Kernel, g: _Group, r0: str, blocks: int, panel: str, panels: int) -> None:
    """C[i][j] = sum over K of A_i B_j for the row blocks r0 + 16i (i < blocks) and the panels panel + j
    (j < panels), then each C tile's epilogue."""
    ops, c0, c1 = kn.tiles, b.index(0), b.index(1)
    row_ids = [r0] + [b.let("r", f"arith.addi {r0}, {b.index(TILE_ROWS * i)} : index") for i in range(1, blocks)]
    panel_ids = [panel] + [b.let("pj", f"arith.addi {panel}, {b.index(j)} : index") for j in range(1, panels)]
    zeros = [(ops.zero(b), ops.accumulator) for _ in range(blocks * panels)]
    k_blocks = _padded_k(kn.spec) // TILE_K
    with b.loop(c0, b.index(k_blocks), c1, zeros) as loop:
        k = b.let("ka", f"arith.muli {loop.iv}, {b.index(TILE_K)} : index")
        k_row = b.let("kr", f"arith.muli {loop.iv}, {b.index(TILE_ROWS)} : index")
        accs = list(loop.args)
        weights: list[str] = []
        # A0, B0, C00, B1, C01, A1, C10, C11: at most 7 tiles live (module docstring).
        for i, row in enumerate(row_ids):
            a = ops.load(b, g.scratch, kn.scratch_type, [row, k])
            for j, p in enumerate(panel_ids):
                if i == 0:
                    weights.append(ops.load(b, "%w", kn.w_type, [p, k_row, c0]))
                accs[i * panels + j] = ops.mulf(b, a, weights[j], accs[i * panels + j])
        loop.yield_(*accs)
    for i, row in enumerate(row_ids):
        for j, p in enumerate(panel_ids):
            ops.store(b, loop.results[i * panels + j], g.c_tile, C_BUFFER, [c0, c0])
            _emit_epilogue(b, kn, g, row, p)


def _emit_epilogue(b: KernelBuilder, kn: _Kernel, g: _Group, r0: str, panel: str) -> None:
    """y[m0 + r0 + r, 16 panel + (0..15)] (op)= the C tile's row r, for the rows below M."""
    spec, c0, c1 = kn.spec, b.index(0), b.index(1)
    left = b.let("rrem", f"arith.subi {g.mlen}, {r0} : index")
    rows = b.let("rows", f"arith.minui {left}, {b.index(TILE_ROWS)} : index")
    col = b.let("col", f"arith.muli {panel}, {b.index(PANEL)} : index")
    first = b.let("ym", f"arith.addi {g.m0}, {r0} : index")
    bias = None
    if spec.bias:
        bias = b.let(
            "bv",
            f"vector.transfer_read %bias[{col}], {b.const('0.0', 'f32')} {{in_bounds = [{kn.in_bounds}]}} "
            f": memref<{spec.n}xf32>, {VEC}",
        )
    with b.loop(c0, rows, c1) as r:
        row = b.let("y", f"arith.addi {first}, {r.iv} : index")
        value = b.let("acc", f"vector.load {g.c_tile}[{r.iv}, {c0}] : {C_BUFFER}, {VEC}")
        prev = None
        if spec.epilogue == "accumulate":
            prev = b.let(
                "yv",
                f"vector.transfer_read %y[{row}, {col}], {b.const('0.0', 'f32')} {{in_bounds = [{kn.in_bounds}]}} "
                f": {kn.y_type}, {VEC}",
            )
        if spec.row_scale:
            scalar = b.let("rs", f"memref.load %row_scale[{row}] : memref<?xf32>")
            scale = b.let("rsb", f"vector.broadcast {scalar} : f32 to {VEC}")
            if prev is not None:
                value = b.let("v", f"vector.fma {value}, {scale}, {prev} : {VEC}")
            else:
                value = b.let("v", f"arith.mulf {value}, {scale} : {VEC}")
        elif prev is not None:
            value = b.let("v", f"arith.addf {value}, {prev} : {VEC}")
        if bias is not None:
            value = b.let("v", f"arith.addf {value}, {bias} : {VEC}")
        if spec.epilogue == "relu2":
            positive = b.let("pos", f"arith.maximumf {value}, {b.const('0.0', VEC)} : {VEC}")
            value = b.let("sq", f"arith.mulf {positive}, {positive} : {VEC}")
        if spec.y_dtype == "bf16":
            _emit_bf16_row(b, kn, row, col, panel, value)
        else:
            b.emit(
                f"vector.transfer_write {value}, %y[{row}, {col}] {{in_bounds = [{kn.in_bounds}]}} : {VEC}, {kn.y_type}"
            )


def _emit_bf16_row(b: KernelBuilder, kn: _Kernel, row: str, col: str, panel: str, value: str) -> None:
    """Round to bf16 (weights.bf16_bits, bit for bit) and store 16 columns, or the N % 16 of the last
    panel with a statically sized store (no masked bf16 store: see gemm._emit_bf16_stores)."""
    bits = f32_to_bf16_bits(b, value, VEC, quiet_nan=True)
    tail = kn.spec.n % PANEL

    def store(count: int) -> None:
        part = bits
        if count < VECTOR:
            part = b.let(
                "yp",
                f"vector.extract_strided_slice {bits} {{offsets = [0], sizes = [{count}], strides = [1]}} "
                f": vector<{VECTOR}xi16> to vector<{count}xi16>",
            )
        half = b.let("yh", f"arith.bitcast {part} : vector<{count}xi16> to vector<{count}xbf16>")
        b.emit(f"vector.store {half}, %y[{row}, {col}] : {kn.y_type}, vector<{count}xbf16>")

    if not tail:
        store(VECTOR)
        return
    inner = b.let("inner", f"arith.cmpi ne, {panel}, {b.index(kn.panels - 1)} : index")
    with b.if_else(inner) as otherwise:
        store(VECTOR)
        otherwise()
        store(tail)

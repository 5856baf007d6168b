"""The x86 GEMM's problem and blocking: GemmSpec (one projection), GemmTiles and the policy that chooses
them (`choose_tiles`), read by tessera-tile-choose-tiles (tiling/x86.py), and the tiles of its AMX variant
(`matrix_unit_tiles`); kernels/gemm.py implements both blockings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

EPILOGUES = ("store", "accumulate", "relu2")
DTYPES = ("f32", "bf16")  # element types of x, the weight and y (bf16: numpy uint16 bfloat16 bits)
WEIGHT_DTYPES = DTYPES
VECTOR = 16  # f32 lanes of one 512-bit register
AVX512_ACCUMULATORS = 24  # of the 32 zmm registers (the rest: weight vectors, a broadcast x)


@dataclass(frozen=True)
class GemmSpec:
    """One projection y[T, n] (op)= x[T, k] @ W[n, k]^T; T is dynamic."""

    n: int  # output features
    k: int  # input features
    epilogue: str  # "store": y = acc ; "accumulate": y += acc ; "relu2": y = relu(acc)**2
    bias: bool = False  # acc += bias[n] before the epilogue
    row_scale: bool = False  # acc *= row_scale[m] before the bias
    weight_dtype: str = "f32"  # or "bf16": bfloat16 weights widened to f32, f32 accumulation
    x_dtype: str = "f32"  # or "bf16": bfloat16 activations x, each widened to f32 where it is broadcast
    y_dtype: str = "f32"  # or "bf16": the f32 result rounded to bfloat16 (nearest even) when stored

    def __post_init__(self) -> None:
        if self.n < 1 or self.k < 1:
            raise ValueError(f"GEMM sizes must be positive, got n={self.n}, k={self.k}")
        if self.epilogue not in EPILOGUES:
            raise ValueError(f"unknown GEMM epilogue '{self.epilogue}' (expected one of {', '.join(EPILOGUES)})")
        for role in ("weight", "x", "y"):
            dtype = getattr(self, f"{role}_dtype")
            if dtype not in DTYPES:
                raise ValueError(f"unknown GEMM {role} dtype '{dtype}' (expected f32 or bf16)")
        if self.y_dtype == "bf16" and self.epilogue == "accumulate":
            raise ValueError("GEMM epilogue 'accumulate' needs an f32 y (a bf16 y only with 'store' or 'relu2')")


@dataclass(frozen=True)
class GemmTiles:
    """Blocking of one GEMM for one target; chosen once by `choose_tiles`, later code only reads it."""

    nr: int  # columns per packed weight panel (a multiple of 16)
    mr: int  # rows of the register block (mr * nr / 16 accumulators)
    kc: int  # K block: a panel's weight block (kc x nr) stays in L2 while a row group streams past it
    mc: int  # rows per group whose x block (mc x kc) every panel reuses from L3 (a multiple of mr)
    ku: int  # k steps unrolled in the micro-kernel's loop body
    min_chains: int = 8  # independent FMA chains a row block keeps (FMA latency x FMA ports)
    lanes: int = VECTOR  # f32 lanes of one vector register: an FMA chain's width
    accumulators: int = AVX512_ACCUMULATORS  # vector registers a row block's accumulators may take

    def __post_init__(self) -> None:
        if self.nr < VECTOR or self.nr % VECTOR:
            raise ValueError(f"nr must be a positive multiple of {VECTOR}, got {self.nr}")
        if self.mr < 1 or self.kc < 1 or self.ku < 1 or self.mc < self.mr or self.mc % self.mr:
            raise ValueError(f"invalid GEMM tiles {self}")


MAX_KC = 1024  # the f32 weight block of one panel, kc x 64 x 4 bytes = 256 KiB, stays in the 1 MiB L2


def choose_tiles(spec: GemmSpec) -> GemmTiles:
    """Tiles for AVX-512 (32 zmm registers; znver5: 2 FMA pipes of 4 cycles, 48 KiB L1d, 1 MiB L2 per core).

    6 x 64 keeps 24 accumulators, 4 weight vectors and a broadcast in registers (14 x 32 with 28
    accumulators measured slower: the register allocator spills one). K is cut into equal blocks of at
    most MAX_KC so that a panel's weight block stays in L2 while the row blocks of a group stream past
    it; a group of mc = 516 rows of x (516 x 1024 x 4 = 2 MiB) is reused from L3 by every panel. Measured
    on znver5 (benchmarks/x86_gemm.py, 2 threads): mc = 516 beat 192 and 2046 by 3-7%, kc = 1024 beat
    512 and K, 6 x 64 beat 14 x 32, 12 x 32 and 8 x 48.
    """
    ku = 4
    if spec.y_dtype == "bf16":  # partial sums may not go through a bf16 y: one K block (kernels/gemm.py)
        return GemmTiles(nr=64, mr=6, kc=spec.k, mc=516, ku=ku)
    blocks = -(-spec.k // MAX_KC)
    per_block = -(-spec.k // blocks)
    kc = min(spec.k, -(-per_block // ku) * ku)  # a multiple of ku, so that only the last block has a k tail
    return GemmTiles(nr=64, mr=6, kc=kc, mc=516, ku=ku)


# AVX2 (x86-64-v3: Haswell, Zen 1-3): 16 ymm registers of 8 f32 lanes. A block of 6 rows keeps 12
# accumulators (6 x 16 columns: the panel in four stripes), two weight vectors and a broadcast; blocks of
# fewer rows take wider stripes (kernels/gemm.py stripe_width). Measured on a 2-core Zen 3 (EPYC, 2.45 GHz,
# benchmarks/x86_gemm.py --tiles, 2026-12-07): 512 x 4096 x 1024 and 512 x 1024 x 4096 fp32 at 150-156
# GFLOP/s with these tiles against 56-60 with AVX-512's (6 x 64: 48 ymm accumulators, spilled); kc 512 or
# 1024 alike, 256 -13%; 4 x 16 -13%, 3 x 32 -30%. With bf16 x and y (512 x 4096 x 1024): 81 GFLOP/s widening
# each x value per stripe, 138 widened once per row block (kernels/gemm.py Gemm.widen).
AVX2_LANES = 8
AVX2_ACCUMULATORS = 12


def avx2_tiles(tiles: Mapping[str, int]) -> dict[str, int]:
    """The AVX2 variant's tiles of a kernel on the GEMM's register blocks: `tiles`' panels, K blocks and row
    groups (the same packed weights and grid), register blocks for 16 ymm registers."""
    return {**tiles, "lanes": AVX2_LANES, "accumulators": AVX2_ACCUMULATORS}


def panel_count(spec: GemmSpec, tiles: GemmTiles) -> int:
    """Number of nr-column weight panels, ceil(n / nr)."""
    return -(-spec.n // tiles.nr)


def packed_weight_shape(spec: GemmSpec, tiles: GemmTiles) -> tuple[int, ...]:
    return (panel_count(spec, tiles), spec.k, tiles.nr)


def footprint_bytes(spec: GemmSpec, tiles: GemmTiles) -> int:
    """Fast memory one program's inner loop keeps live: a panel's weight block (kc x nr, held in L2 while the
    row blocks stream past), one row block's x (mr x kc, L1) and the accumulators (mr x nr, registers). The
    x group (mc x kc) is reused from L3 and not counted."""
    weight_bytes = 2 if spec.weight_dtype == "bf16" else 4
    x_bytes = 2 if spec.x_dtype == "bf16" else 4
    return tiles.kc * tiles.nr * weight_bytes + tiles.mr * tiles.kc * x_bytes + tiles.mr * tiles.nr * 4


# The AMX variant stages a group of rows of x as bf16 once per call: at most STAGED_BYTES (it stays in L2)
# and at most MAX_GROUP_ROWS rows; on the stack up to STACK_STAGED_BYTES (the x86 footprint a thread's stack
# holds), beyond it on the heap (a malloc per call, which the allocator serves from memory it keeps after the
# first). Each block of weight panels (at most WEIGHT_BLOCK_BYTES of weights) then stays in L2 while every row
# of the group passes it: the weights stream from memory once per group, not once per row block. Measured on
# a 2-core Xeon with AMX (benchmarks/x86_bf16_gemm.py shapes, 2 threads, 2026-12-07): 512 x 1024 x 32000 (an
# LM head) 0.94-1.01 -> 1.38-1.54 TFLOP/s against panel pairs over the group's rows; 512 x 1024 x 6176 +5%,
# 512 x 1024 x 4096 and 512 x 4096 x 1024 within the noise; 2048 x 5120 x 20480 1.15-1.19 -> 1.50-1.52 with
# groups of 384 rows (4 MiB) instead of 96 (1 MiB).
STAGED_BYTES = 4 << 20
STACK_STAGED_BYTES = 1 << 20
MAX_GROUP_ROWS = 512
WEIGHT_BLOCK_BYTES = 768 << 10


def matrix_unit_tiles(spec: GemmSpec, tiles: GemmTiles) -> dict[str, int]:
    """kernels/gemm.py's MatrixUnitGemm tiles for AMX (arch.AMX_BF16): the vector blocking's panel `nr` as the
    unit of the range a call runs; the instruction's m, n, k; the staged row group and its row length lda
    (K rounded up to k, plus k where that is an even number of 64-byte lines: the 16 rows of a tile then
    fall in 16 different L1 sets instead of one or two), whether that group lies on the heap (`staged_heap`);
    the weight panels per block (an even count)."""
    from tessera.arch import AMX_BF16

    kt = AMX_BF16.k
    padded = -(-spec.k // kt) * kt
    lda = padded if (padded * 2 // 64) % 2 else padded + kt
    rows = 2 * AMX_BF16.m
    group = max(rows, min(MAX_GROUP_ROWS, STAGED_BYTES // (lda * 2) // rows * rows))
    block = max(2, WEIGHT_BLOCK_BYTES // (padded * AMX_BF16.n * 2) // 2 * 2)
    heap = int(group * lda * 2 > STACK_STAGED_BYTES)
    return {"nr": tiles.nr, "kt": kt, "mt": AMX_BF16.m, "nt": AMX_BF16.n, "group": group, "lda": lda, "block": block,
            "staged_heap": heap}  # fmt: skip

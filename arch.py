"""The targets Tessera tiles for, and the facts about each that the tiling policies, the footprint pass and
the lowerings read: fast memory per worker, and for the GPUs wave size, the scratchpad (LDS / shared memory)
and its limit, the matrix instructions. The dialects know no target: what a target has is here.

One table for NVIDIA and AMD so that a policy is written once and differs between targets only in what
it reads here (the comparison test in test/test_gpu_tiling.py holds it to that).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tessera.errors import TesseraError

# Fast memory per worker that a kernel's footprint must fit (bytes): an x86 core's L2 (a conservative
# 1 MiB), Hopper's opt-in shared memory per block (227 KiB), CDNA's LDS per workgroup (64 KiB).
FAST_MEMORY_LIMITS = {"x86": 1 << 20, "gfx942": 64 * 1024, "gfx90a": 64 * 1024, "sm_90a": 227 * 1024}
TARGETS = tuple(FAST_MEMORY_LIMITS)
# Targets whose fast memory is a scratchpad the kernel allocates (shared memory, LDS) beside a register file:
# their footprint is the scratchpad bytes alone, the number a kernel descriptor reports. On a CPU the
# cache holds tiles and accumulators alike.
SCRATCHPAD_TARGETS = ("sm_90a", "gfx942", "gfx90a")


@dataclass(frozen=True)
class WaveFragments:
    """Where one wave holds a matrix instruction's tiles (CDNA's 16x16 MFMA; AMD's matrix instruction
    calculator): lane l = group q + c (c < group) holds A[c][k_per_lane q + i] and B[k_per_lane q + i][c]
    for i < k_per_lane, and D[acc_per_lane q + i][c] for i < acc_per_lane."""

    group: int
    k_per_lane: int
    acc_per_lane: int


# Threads that issue one WGMMA together: 4 warps of 32.
WARPGROUP = 128


@dataclass(frozen=True)
class WarpgroupFragments:
    """Where a warpgroup holds a WGMMA m64nNk16 f32 accumulator (PTX ISA "Register Fragments", wgmma D): warp w
    holds rows 16 w .. 16 w + 15; its lane l, register i (0 .. N/2 - 1) holds row 16 w + l / 4 + 8 ((i / 2)
    mod 2), column 8 (i / 4) + 2 (l mod 4) + i mod 2 — the mma.m16n8 C fragment every 8 columns. A and B are
    read from shared memory through descriptors, not held by lanes."""

    warps: int = 4
    rows_per_warp: int = 16
    lanes_per_row: int = 4  # lanes sharing a row: each holds 2 adjacent columns of every 8

    def coordinate(self, thread: int, register: int) -> tuple[int, int]:
        """(row, column) in the warpgroup's [64, N] result of `register` of warpgroup thread `thread`."""
        warp, lane = divmod(thread, 32)
        row = self.rows_per_warp * warp + lane // self.lanes_per_row + 8 * ((register // 2) % 2)
        column = 8 * (register // 4) + 2 * (lane % self.lanes_per_row) + register % 2
        return row, column


@dataclass(frozen=True)
class MatrixInstruction:
    """One matrix multiply-accumulate instruction: D[m, n] += A[m, k] * B[k, n], f32 accumulation."""

    name: str  # the MLIR op (rocdl.mfma.*), PTX shape family (wgmma.m64nNk16) or x86 instruction
    m: int
    n: int
    k: int
    # Its operands and accumulator in one wave's registers, where a wave issues it alone (not WGMMA's
    # warpgroup, not AMX's tile registers).
    fragments: WaveFragments | None = None
    # Its accumulator in a warpgroup's registers, where a warpgroup issues it (Hopper's WGMMA; n is then the
    # plan's N of one instruction, a multiple of 8 up to 256).
    warpgroup: WarpgroupFragments | None = None


@dataclass(frozen=True)
class GpuArch:
    name: str  # the target name in Tile-IR: gfx942, gfx90a, sm_90a
    vendor: str  # "amd" | "nvidia"
    wave_size: int  # lanes that execute one instruction together (wave64 on CDNA, warp of 32 on Hopper)
    scratch_space: str  # the Tile-IR memory space of the scratchpad: "lds" | "shared"
    scratch_limit: int  # bytes per workgroup / CTA
    # The matrix instruction for each operand element type ("bf16", "f32"); None: f32 work is SIMT FMA
    # (Hopper's only f32 tensor-core path is tf32, which would not keep float32 arithmetic).
    mma: dict[str, MatrixInstruction | None]
    supported_mma: tuple[str, ...]  # every matrix instruction of the arch Tessera may choose among
    async_copies: bool  # operands staged by an asynchronous bulk copy (TMA) rather than by the threads
    max_threads: int = 1024
    # Bytes a kernel may declare statically (a SIMT kernel's scratch: workgroup attributions); more needs the
    # dynamic allocation a TMA kernel makes (CUDA: 48 KiB static per block, the rest opt-in dynamic).
    static_scratch_limit: int | None = None
    # The LLVM data layout its GPU module declares, where the upstream conversion does not set one (NVPTX:
    # convert-gpu-to-nvvm leaves it to the translation, which needs it; convert-gpu-to-rocdl sets AMDGPU's).
    data_layout: str | None = None

    @property
    def static_limit(self) -> int:
        return self.scratch_limit if self.static_scratch_limit is None else self.static_scratch_limit

    def instruction(self, element: str) -> MatrixInstruction | None:
        return self.mma[element]


# CDNA2 (MI200) and CDNA3 (MI300) both have the 16x16 bf16 "_1k" MFMA (4 bf16 of K per lane) and the f32
# 16x16x4 MFMA; CDNA3 adds xf32 and fp8 shapes that Tessera does not choose (xf32 is not float32).
_MFMA_BF16 = MatrixInstruction("rocdl.mfma.f32.16x16x16bf16.1k", 16, 16, 16, WaveFragments(16, 4, 4))
_MFMA_F32 = MatrixInstruction("rocdl.mfma.f32.16x16x4f32", 16, 16, 4, WaveFragments(16, 1, 4))
_CDNA2_MFMA = (
    "rocdl.mfma.f32.32x32x8bf16.1k",
    "rocdl.mfma.f32.16x16x16bf16.1k",
    "rocdl.mfma.f32.32x32x2f32",
    "rocdl.mfma.f32.16x16x4f32",
)
_CDNA3_MFMA = (*_CDNA2_MFMA, "rocdl.mfma.f32.16x16x8.xf32", "rocdl.mfma.f32.32x32x4.xf32")

# x86's matrix unit: AMX's tdpbf16ps (dialects/amx.py TileMulFOp) multiplies a 16 x 32 bf16 tile by 32 x 16 (given as 16 rows
# of k pairs, VNNI) into a 16 x 16 f32 tile; a core has 8 tile registers (tmm0-7) of 16 rows x 64 bytes.
AMX_BF16 = MatrixInstruction("tdpbf16ps", 16, 16, 32)
AMX_TILE_REGISTERS = 8

# LLVM 22's NVPTX data layout for nvptx64 (what llvmlite's sm_90a target machine reports).
NVPTX_DATA_LAYOUT = "e-p6:32:32-i64:64-i128:128-i256:256-v16:16-v32:32-n16:32:64"

GPU_ARCHS: dict[str, GpuArch] = {
    "gfx942": GpuArch(
        "gfx942", "amd", 64, "lds", FAST_MEMORY_LIMITS["gfx942"], {"bf16": _MFMA_BF16, "f32": _MFMA_F32},
        _CDNA3_MFMA, async_copies=False,
    ),
    "gfx90a": GpuArch(
        "gfx90a", "amd", 64, "lds", FAST_MEMORY_LIMITS["gfx90a"], {"bf16": _MFMA_BF16, "f32": _MFMA_F32},
        _CDNA2_MFMA, async_copies=False,
    ),
    "sm_90a": GpuArch(
        "sm_90a", "nvidia", 32, "shared", FAST_MEMORY_LIMITS["sm_90a"],
        {"bf16": MatrixInstruction("wgmma.m64nNk16.f32.bf16.bf16", 64, 64, 16, warpgroup=WarpgroupFragments()),
         "f32": None},
        ("wgmma.m64nNk16.f32.bf16.bf16",), async_copies=True, static_scratch_limit=48 * 1024,
        data_layout=NVPTX_DATA_LAYOUT,
    ),
}  # fmt: skip


# Shared memory / LDS serves a wave's reads from banks of 4 bytes (32 of them on both vendors' GPUs); a lane
# reads at most 8 bytes of a bf16 row at once (4 elements: an MFMA fragment), one word of an f32 row.
SCRATCH_BANK_BYTES = 4


def conflict_free_row(elements: int, element_bytes: int) -> int:
    """The row length (elements, padding included) of a scratchpad tile whose lanes read one column down
    different rows: the smallest at least `elements` that is an odd number of a lane's reads (8 bytes of bf16,
    4 of f32), so that the reads of different rows fall in different banks."""
    read = 2 * SCRATCH_BANK_BYTES if element_bytes == 2 else SCRATCH_BANK_BYTES
    row = elements
    while (row * element_bytes) % read or (row * element_bytes // read) % 2 == 0:
        row += 1
    return row


def staged_shape(shape: tuple[int, ...], element_bytes: int) -> tuple[int, ...]:
    """A tile staged in the scratchpad for reads down its columns: its rows conflict_free_row long where it
    has several (one row has no other row to conflict with)."""
    rows = 1
    for size in shape[:-1]:
        rows *= size
    if rows == 1:
        return shape
    return (*shape[:-1], conflict_free_row(shape[-1], element_bytes))


def mma_rows_padded(rhs_transposed: bool) -> tuple[bool, bool]:
    """Whether a GPU's mma reads each operand's rows down a column — a's always, b's where given transposed
    ([N, K]) — so that the scratchpad holds those rows padded (staged_shape): the SIMT lowering and the
    footprint pass both ask here."""
    return True, rhs_transposed


# The WGMMA operand layouts Tessera stages (lowering/nvvm/warpgroup_mma.py): rows of 128 bytes (64 bf16) with
# the 128-byte swizzle, 8 rows to a 1024-byte swizzle period — K-major (a row per M or N, 64 K elements; a K
# wider than 64 in several such atoms one after another) or MN-major (a row per K, 64 N elements).
SWIZZLE_ROW_BYTES = 128
SWIZZLE_ROW_ELEMENTS = SWIZZLE_ROW_BYTES // 2


def warpgroup_instruction(arch: GpuArch, element: str, shape: tuple[int, int], depth: int,
                          threads: int) -> MatrixInstruction | None:  # fmt: skip
    """The WGMMA that multiplies a [rows, cols] accumulator over `depth` (K) in a workgroup of `threads`, where
    the lanes stage its operands in shared memory themselves (not a copy engine): the arch's warpgroup
    instruction for `element` with N the whole width where it fits one instruction (else 64-column ones), when
    the workgroup is exactly one warpgroup per 64 rows and depth is whole K steps; else None."""
    instruction = arch.instruction(element)
    if instruction is None or instruction.warpgroup is None:
        return None
    rows, cols = shape
    if rows % instruction.m or threads != WARPGROUP * (rows // instruction.m) or depth % instruction.k:
        return None
    if cols <= 256 and cols % 8 == 0:
        return replace(instruction, n=cols)
    return instruction if cols % instruction.n == 0 else None


def mn_major_staged(cols: int) -> bool:
    """Whether a WGMMA B operand given [K, N] is staged as given (MN-major, read through a transposed
    descriptor): where N is whole 128-byte rows; else it is stored transposed, K-major."""
    return cols % SWIZZLE_ROW_ELEMENTS == 0


def warpgroup_staged_bytes(rows: int, depth: int) -> int:
    """Shared bytes of a [rows, depth] bf16 WGMMA operand staged K-major with the 128-byte swizzle: whole
    128-byte rows per 64 of K (rows a multiple of 8, so every operand stays 1024-aligned after another)."""
    return rows * -(-depth // SWIZZLE_ROW_ELEMENTS) * SWIZZLE_ROW_BYTES


def gpu_arch(name: str) -> GpuArch:
    arch = GPU_ARCHS.get(name)
    if arch is None:
        raise TesseraError(f"unknown GPU architecture '{name}' (known: {', '.join(GPU_ARCHS)})")
    return arch

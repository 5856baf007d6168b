"""tessera-tile-compute-footprint: each kernel's fast-memory bytes per worker, from its tile-level body.

On a CPU (x86): bytes of every tile loaded into a fast space (registers unless a load names another) and of
its scratch buffers in fast memory (not the "global" ones).
On a GPU (sm_90a, gfx942, gfx90a) the footprint is the scratchpad the kernel allocates (accumulators live
in the register file): its scratch buffers, the tiles it loads there (an async load of a pipelined loop once
per stage) and the operands its SIMT lowering stages there, row padding included (a WGMMA's operands that
the lanes stage: in the 128-byte-swizzle layouts its descriptors read, tile.warpgroup_staging).
That is the number the kernel descriptor reports (the ROCDL target checks the two agree).
Written as `footprint` on every `tessera.tile.kernel`; the kernel verifier then checks it against the
target's limit (arch.py FAST_MEMORY_LIMITS; a GPU kernel without async copies declares its scratch
statically, against the arch's static limit: 48 KiB on Hopper), so an over-sized tile choice fails here, with the
kernel named, rather than as a slow or failing kernel later. Options: none.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, MemRefType, ModuleOp, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import VerifyException

from tessera.arch import FAST_MEMORY_LIMITS, GPU_ARCHS, SCRATCHPAD_TARGETS, GpuArch, mma_rows_padded, staged_shape
from tessera.dialects import tile
from tessera.dialects.schedule import element_bytes
from tessera.dialects.tile import TileType
from tessera.errors import TesseraError

FAST_SPACES = ("cache", "shared", "lds", "registers")
SCRATCHPAD_SPACES = ("shared", "lds")


def kernel_footprint(kernel: tile.KernelOp) -> int:
    """A kernel's fast-memory bytes per worker: nothing for a kernel without a body yet."""
    return _dataflow_footprint(kernel) if kernel.is_dataflow() else 0


def _dataflow_footprint(kernel: tile.KernelOp) -> int:
    """A dataflow body: its scratch buffers in fast memory (shared memory / LDS on a GPU, cache on a CPU; not
    the "global" ones), and the tiles its loads bring into the scratchpad (GPU) or into any fast space (CPU:
    a load without a space is held in registers)."""
    scratchpad = kernel.target is not None and kernel.target.data in SCRATCHPAD_TARGETS
    arch = GPU_ARCHS.get(kernel.target.data) if kernel.target is not None else None
    padded_in_place = {alloc for alloc, padded in _read_in_place(kernel) if padded} if scratchpad else set()
    total = 0
    warpgroup_rows: set[int] = set()
    if arch is not None:  # the operands lane-staged for WGMMA, in their swizzled layout
        offsets, staged_bytes = tile.warpgroup_staging(kernel, arch)
        total += staged_bytes
        warpgroup_rows = {_rows(mma.result.type) for mma, _ in offsets}
    for op in kernel.body.walk():
        if scratchpad:
            staged = _staged_operands(op, warpgroup_rows) if arch is None or not _warpgroup_staged(op, arch) else []
            total += sum(_staged_bytes(operand.type, padded) for operand, padded in staged)
        if isinstance(op, tile.AllocOp) and op.in_fast_memory():
            total += _staged_bytes(op.result.type, True) if op in padded_in_place else op.bytes()
        elif isinstance(op, tile.LoadOp):
            space = "registers" if op.space is None else op.space.data
            if space in (SCRATCHPAD_SPACES if scratchpad else FAST_SPACES):
                total += op.tile_bytes() * _buffers(op)
    return total


def _buffers(load: tile.LoadOp) -> int:
    """Buffers a load's tile occupies at once: an async load in a pipelined loop has one per stage."""
    loop = load.parent_op()
    stages = tile.pipeline_stages(loop) if loop is not None and load.is_async is not None else None
    return 1 if stages is None else stages


def _staged_operands(op: Operation, warpgroup_rows: set[int]) -> list[tuple[SSAValue, bool]]:
    """The operands a GPU's SIMT lowering passes between lanes through the scratchpad, one buffer each
    (lowering/simt_matrix.py), and whether its rows are padded: both operands of an mma (a's rows and b's
    where given transposed are read down a column), a matrix tile reduced along an axis, a broadcast's
    input — but not a broadcast of positions (an iota: each lane knows its own), nor a reduction or a
    broadcast along the rows of a tile as tall as a WGMMA accumulator (rows of `warpgroup_rows`: the lowering
    holds such tiles as Warpgroups, their rank-1 side in the rows' own threads: WarpgroupRows)."""
    if isinstance(op, tile.MmaOp):
        padded = mma_rows_padded(op.rhs_transposed is not None)
        return [(op.operands[i], padded[i]) for i in range(2) if _lane_staged(op, i)]
    if isinstance(op, tile.ReduceOp | tile.BroadcastOp) and int(op.axis.value.data) == 1:
        matrix = op.input if isinstance(op, tile.ReduceOp) else op.result
        if _rows(matrix.type) in warpgroup_rows:
            return []
    if isinstance(op, tile.ReduceOp) and isinstance(op.input.type, TileType) and len(op.input.type.get_shape()) == 2:
        return [(op.input, False)]
    if (
        isinstance(op, tile.BroadcastOp)
        and tile.read_directly(op) is None
        and not isinstance(op.input.owner, tile.IotaOp)
    ):
        return [(op.input, False)]
    return []


def _rows(type_: Attribute) -> int:
    """A tile's first extent (its rows, for a matrix tile)."""
    assert isinstance(type_, TileType)
    return type_.get_shape()[0]


def _warpgroup_staged(op: Operation, arch: GpuArch) -> bool:
    return isinstance(op, tile.MmaOp) and tile.warpgroup_staged(op, arch) is not None


def _lane_staged(mma: tile.MmaOp, index: int) -> bool:
    """Whether the lanes stage an mma operand: not one read in place, nor one a load already brought into the
    scratchpad (counted there)."""
    load = mma.operands[index].owner
    in_scratchpad = isinstance(load, tile.LoadOp) and load.space is not None and load.space.data in SCRATCHPAD_SPACES
    return tile.read_in_place(mma, index) is None and not in_scratchpad


def _read_in_place(kernel: tile.KernelOp) -> list[tuple[tile.AllocOp, bool]]:
    """The scratch buffers mma operands are read from in place (tile.read_in_place), and whether the operand's
    rows are read down a column (then the buffer's rows are padded as a staged operand's would be)."""
    found = []
    arch = GPU_ARCHS.get(kernel.target.data) if kernel.target is not None else None
    for op in kernel.body.walk():
        if isinstance(op, tile.MmaOp) and not (arch is not None and _warpgroup_staged(op, arch)):
            for index, padded in enumerate(mma_rows_padded(op.rhs_transposed is not None)):
                alloc = tile.read_in_place(op, index)
                if alloc is not None:
                    found.append((alloc, padded))
    return found


def _staged_bytes(type_: Attribute, padded: bool) -> int:
    assert isinstance(type_, TileType | MemRefType)
    size = element_bytes(type_.element_type)
    shape = staged_shape(type_.get_shape(), size) if padded else type_.get_shape()
    count = 1
    for extent in shape:
        count *= extent
    return count * size


def compute_footprints(module: ModuleOp) -> None:
    for kernel in [op for op in module.ops if isinstance(op, tile.KernelOp)]:
        if kernel.target is None:
            raise TesseraError(
                f"{kernel.name} @{kernel.sym_name.data}: no tiles chosen (run tessera-tile-choose-tiles first)"
            )
        footprint = kernel_footprint(kernel)
        kernel.properties["footprint"] = IntegerAttr(footprint, i64)
        try:
            kernel.verify()
        except VerifyException as exc:
            raise TesseraError(str(exc).splitlines()[0]) from None
        target = kernel.target.data
        limit = FAST_MEMORY_LIMITS.get(target)
        where = f"{kernel.name} @{kernel.sym_name.data}"
        if limit is None:
            raise TesseraError(f"{where}: unknown target '{target}' (known: {', '.join(FAST_MEMORY_LIMITS)})")
        if footprint > limit:
            raise TesseraError(f"{where}: footprint {footprint} bytes exceeds the {target} limit of {limit} bytes")
        if target in GPU_ARCHS:  # the rest is declared statically, against the arch's static limit
            static, static_limit = footprint - _dynamic_bytes(kernel), GPU_ARCHS[target].static_limit
            if static > static_limit:
                raise TesseraError(
                    f"{where}: {static} bytes of static shared memory exceed the {target} limit of {static_limit}"
                )


def _dynamic_bytes(kernel: tile.KernelOp) -> int:
    """The part of a GPU kernel's footprint in its one dynamic allocation: the operands it stages by async
    copies or for WGMMA."""
    arch = GPU_ARCHS[kernel.target.data] if kernel.target is not None else None
    if arch is None:
        return 0
    _, staged_bytes = tile.warpgroup_staging(kernel, arch)
    copied = (op for op in kernel.body.walk() if isinstance(op, tile.LoadOp) and op.is_async is not None)
    return staged_bytes + sum(load.tile_bytes() * _buffers(load) for load in copied)


@dataclass(frozen=True)
class TileComputeFootprintPass(ModulePass):
    name = "tessera-tile-compute-footprint"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        compute_footprints(op)

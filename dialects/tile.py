"""tessera.tile: Tile-IR — kernels with their iteration space, tile sizes, memory spaces and footprint.

Each Schedule-IR step becomes a `tessera.tile.launch` of a `tessera.tile.kernel`; identical steps (same
kind, dimensions and epilogue) launch the same kernel, so a 62-layer model compiles a few dozen kernels.
A kernel records:
    kind, dims       what it computes (the Schedule-IR step it came from): provenance for names and caches
    parallel, grid   the dimension the runtime splits across threads / CTAs / workgroups, and its extent
    target, tiles    chosen once by `tessera-tile-choose-tiles{target=...}`; later passes only read them
    body             what one program (one index of the grid) computes, in dataflow form (below): the kernel
                     of kernels/ built from the tiles (empty until they are chosen)
    footprint        bytes of fast memory (cache / shared memory / LDS) per worker, computed from the body
                     by `tessera-tile-compute-footprint`, which checks it against the target's limit (arch.py)

A dataflow body's block takes the launch operands (memrefs, the token dimension dynamic), then the scalars
the kernel reads (`scalars`, e.g. the sequence position, as index), then the program id (index). Tiles are
SSA values of `!tessera.tile.tile<16xf32>` (shape, element type); the ops below take and return them, loops
are `scf.for` carrying tiles, index arithmetic is `arith`:

```mlir
tessera.tile.kernel @rms_scale_d64 {kind = "rms_scale", dims = {hidden = 64 : i64, epsilon = 1.0e-05 : f64},
    parallel = "tokens", grid = 0 : i64, target = "x86", tiles = {block = 64 : i64}} {
^0(%h : memref<?x64xf32>, %rstd : memref<?xf32>, %t : index):
  %c0 = arith.constant 0 : index
  %row = tessera.tile.load %h[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<64xf32>
  %squares = tessera.tile.map %row : !tessera.tile.tile<64xf32> -> !tessera.tile.tile<64xf32> {
  ^1(%v : f32):
    %s = arith.mulf %v, %v : f32
    tessera.tile.yield %s : f32
  }
  %sum = tessera.tile.reduce add %squares : !tessera.tile.tile<64xf32> -> f32
  ...
  tessera.tile.store %scale, %rstd[%t] : f32, memref<?xf32>
}
```
The target lowerings (lowering/tile_to_x86.py, lowering/tile_to_simt.py) see only these ops, never `kind`.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import (
    I64,
    ArrayAttr,
    BFloat16Type,
    DenseArrayBase,
    DictionaryAttr,
    Float32Type,
    FloatAttr,
    IndexType,
    IntAttr,
    IntegerAttr,
    MemRefType,
    NoneAttr,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    UnitAttr,
    i32,
    i64,
)
from xdsl.ir import (
    Attribute,
    Block,
    BlockArgument,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, NoTerminator, Pure, SymbolOpInterface
from xdsl.utils.exceptions import VerifyException

from tessera.arch import GpuArch, MatrixInstruction, mn_major_staged, warpgroup_instruction, warpgroup_staged_bytes
from tessera.dialects.schedule import element_bytes

MEMORY_SPACES = ("global", "cache", "shared", "lds", "registers")
SCRATCHPAD_SPACES = ("shared", "lds")
SWIZZLES = (32, 64, 128)
# The pipelining annotation of an scf.ForOp of a kernel body (pipeline_stages).
STAGES = "tessera.tile.stages"
# The scalars a kernel may read besides its buffers (block arguments of type index, in this order).
KERNEL_SCALARS = ("position",)
COMBINERS = ("add", "max", "min")


def _int(attr: Attribute) -> int:
    assert isinstance(attr, IntegerAttr)
    return int(attr.value.data)


def plain_dict(attr: DictionaryAttr) -> dict[str, int | float | str]:
    """A dictionary attribute of integers, floats and strings (kernel dims, tiles) as Python values."""
    plain: dict[str, int | float | str] = {}
    for key, value in attr.data.items():
        if isinstance(value, IntegerAttr):
            plain[key] = int(value.value.data)
        elif isinstance(value, FloatAttr):
            plain[key] = float(value.value.data)
        elif isinstance(value, StringAttr):
            plain[key] = value.data
    return plain


# --- the tile type ---------------------------------------------------------------------------------------


@irdl_attr_definition
class TileType(ParametrizedAttribute, TypeAttribute):
    """A tile value: `!tessera.tile.tile<16xf32>`, a static shape of scalar elements. Where its elements live
    (registers of one core, lanes of a wave) is the target lowering's choice."""

    name = "tessera.tile.tile"
    shape: ArrayAttr[IntAttr]
    element_type: Attribute

    def __init__(self, shape: Sequence[int], element_type: Attribute) -> None:
        super().__init__(ArrayAttr([IntAttr(d) for d in shape]), element_type)

    def get_shape(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    def element_count(self) -> int:
        count = 1
        for d in self.get_shape():
            count *= d
        return count

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<" + "".join(f"{d}x" for d in self.get_shape()))
        printer.print_attribute(self.element_type)
        printer.print_string(">")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        with parser.in_angle_brackets():
            shape, element = parser.parse_ranked_shape()
        return [ArrayAttr([IntAttr(d) for d in shape]), element]

    def verify(self) -> None:
        if not self.shape.data or any(d.data <= 0 for d in self.shape.data):
            raise VerifyException(f"{self.name}: a tile has a non-empty shape of positive sizes")


def element_of(type_: Attribute) -> Attribute:
    """The element type of a tile, or a scalar type itself."""
    return type_.element_type if isinstance(type_, TileType) else type_


def with_element(type_: Attribute, element: Attribute) -> Attribute:
    """type_ (a tile or a scalar) holding `element` instead."""
    return TileType(type_.get_shape(), element) if isinstance(type_, TileType) else element


# --- kernels and launches ----------------------------------------------------------------------------------


@irdl_op_definition
class KernelOp(IRDLOperation):
    name = "tessera.tile.kernel"
    sym_name = prop_def(SymbolNameConstraint())
    kind = prop_def(StringAttr)
    dims = prop_def(DictionaryAttr)
    parallel = prop_def(StringAttr)
    grid = prop_def(IntegerAttr[I64])
    target = opt_prop_def(StringAttr)
    tiles = opt_prop_def(DictionaryAttr)
    footprint = opt_prop_def(IntegerAttr[I64])
    # The scalars a dataflow body reads (KERNEL_SCALARS), as index block arguments after the buffers.
    scalars = opt_prop_def(ArrayAttr[StringAttr])
    # A ranged body runs a range [first, end) of the grid per call (its last two block arguments) instead of
    # one program: work that every program of a call would repeat is done once (the AMX GEMM stages x once).
    ranged = opt_prop_def(UnitAttr)
    # A second grid dimension over the call's tokens: ceil(tokens / token_block) programs along it for each of
    # the grid's (a GPU GEMM's row blocks); the body then takes two program ids, the grid's and this one's.
    token_block = opt_prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(SymbolOpInterface(), IsolatedFromAbove(), NoTerminator())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name attr-dict-with-keyword $body"

    def is_dataflow(self) -> bool:
        """Whether the body is written (the kernel of kernels/, built once the tiles are chosen)."""
        return bool(self.body.block.args)

    def scalar_names(self) -> tuple[str, ...]:
        return () if self.scalars is None else tuple(s.data for s in self.scalars.data)

    def program_args(self) -> tuple[SSAValue, ...]:
        """The program id (two over a grid with a token_block), or a ranged body's [first, end) of the grid."""
        two = self.ranged is not None or self.token_block is not None
        return tuple(self.body.block.args[-2:] if two else self.body.block.args[-1:])

    def buffers(self) -> tuple[SSAValue, ...]:
        """The block arguments of the launch operands."""
        args = self.body.block.args
        return tuple(args[: len(args) - len(self.scalar_names()) - len(self.program_args())])

    def scalar_args(self) -> tuple[SSAValue, ...]:
        args = self.body.block.args
        programs = len(self.program_args())
        return tuple(args[len(args) - len(self.scalar_names()) - programs : len(args) - programs])

    def program_id(self) -> SSAValue:
        assert self.ranged is None, "a ranged kernel's body takes [first, end), not one program id"
        return self.program_args()[0]

    def verify_(self) -> None:
        where = f"{self.name} @{self.sym_name.data}"
        if _int(self.grid) < 0:
            raise VerifyException(f"{where}: grid must be >= 0 (0: the call's token count), got {_int(self.grid)}")
        if self.is_dataflow():
            self._verify_arguments(where)
            self._verify_pipelines(where)
        if self.token_block is not None and (_int(self.token_block) <= 0 or self.ranged is not None):
            raise VerifyException(f"{where}: token_block must be > 0, on a body that is not ranged")
        if self.footprint is not None and _int(self.footprint) < 0:
            raise VerifyException(f"{where}: footprint must be >= 0, got {_int(self.footprint)}")

    def _verify_pipelines(self, where: str) -> None:
        for op in self.body.walk():
            if STAGES not in op.attributes:
                continue
            stages = op.attributes[STAGES]
            if not isinstance(op, scf.ForOp) or not isinstance(stages, IntegerAttr) or _int(stages) < 1:
                raise VerifyException(f"{where}: {STAGES} is a count >= 1 of pipeline stages, on an scf.ForOp")

    def _verify_arguments(self, where: str) -> None:
        unknown = [name for name in self.scalar_names() if name not in KERNEL_SCALARS]
        if unknown:
            raise VerifyException(f"{where}: unknown scalars {unknown} (known: {', '.join(KERNEL_SCALARS)})")
        args = self.body.block.args
        if len(args) < len(self.scalar_names()) + len(self.program_args()):
            programs = "[first, end) of its grid" if self.ranged is not None else "the program id"
            raise VerifyException(f"{where}: the body takes its buffers, its scalars and {programs}")
        for arg in (*self.scalar_args(), *self.program_args()):
            if not isinstance(arg.type, IndexType):
                raise VerifyException(f"{where}: scalars and the program id are index arguments, got {arg.type}")
        for arg in self.buffers():
            if not isinstance(arg.type, MemRefType):
                raise VerifyException(f"{where}: launch operands are memref arguments, got {arg.type}")


@irdl_op_definition
class LaunchOp(IRDLOperation):
    """One call of a kernel in a program, over the Schedule-IR buffers it reads (`ins`) and writes (`outs`)."""

    name = "tessera.tile.launch"
    kernel = prop_def(SymbolRefAttr)
    ins = var_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = "$kernel `ins` `(` $ins `:` type($ins) `)` `outs` `(` $outs `:` type($outs) `)` attr-dict"


# --- dataflow ops ------------------------------------------------------------------------------------------


def _scalar_or_tile(type_: Attribute) -> bool:
    return isinstance(type_, TileType) or not isinstance(type_, MemRefType)


def _access_properties(axes: Sequence[int] | None, bound_axes: Sequence[int] | None) -> dict[str, Attribute]:
    properties: dict[str, Attribute] = {}
    if axes is not None:
        properties["axes"] = DenseArrayBase.from_list(i64, list(axes))
    if bound_axes is not None:
        properties["bound_axes"] = DenseArrayBase.from_list(i64, list(bound_axes))
    return properties


def read_in_place(mma: MmaOp, index: int) -> AllocOp | None:
    """The scratch buffer an mma operand (index 0: lhs, 1: rhs) is, where it is only that: a load of the whole
    buffer (from its origin, along its own dimensions, unmasked) used by this mma alone. A lowering that stages
    mma operands in fast memory may then read the buffer itself; None otherwise."""
    value = mma.operands[index]
    load = value.owner
    if not isinstance(load, LoadOp) or not isinstance(load.memref.owner, AllocOp) or not value.has_one_use():
        return None
    alloc = load.memref.owner
    buffer = alloc.result.type
    assert isinstance(buffer, MemRefType) and isinstance(value.type, TileType)
    if not alloc.in_fast_memory() or load.bounds or load.axes is not None:
        return None
    if tuple(value.type.get_shape()) != tuple(buffer.get_shape()):
        return None
    origin = all(
        isinstance(index_op := index.owner, arith.ConstantOp) and index_op.value == IntegerAttr(0, IndexType())
        for index in load.indices
    )
    return alloc if origin else None


def kernel_of(op: Operation) -> KernelOp:
    """The tessera.tile.kernel whose body holds `op`."""
    parent = op.parent_op()
    while not isinstance(parent, KernelOp):
        assert parent is not None, f"{op.name} outside a tessera.tile.kernel"
        parent = parent.parent_op()
    return parent


def workgroup_threads(kernel: KernelOp, wave_size: int) -> int:
    """The threads of a kernel's GPU workgroup: its tiles' `threads`, else one wave."""
    tiles = {} if kernel.tiles is None else plain_dict(kernel.tiles)
    return int(tiles.get("threads", wave_size))


def warpgroup_staged(mma: MmaOp, arch: GpuArch) -> MatrixInstruction | None:
    """The WGMMA an mma runs as where its workgroup's lanes stage both bf16 operands in shared memory
    themselves (arch.warpgroup_instruction; operands a copy engine loads are the pipelined loop's); else None."""
    lhs, rhs, acc = (operand.type for operand in mma.operands)
    assert isinstance(lhs, TileType) and isinstance(rhs, TileType) and isinstance(acc, TileType)
    if not (isinstance(lhs.element_type, BFloat16Type) and isinstance(rhs.element_type, BFloat16Type)):
        return None
    if any(isinstance(load := operand.owner, LoadOp) and load.is_async is not None for operand in mma.operands[:2]):
        return None
    rows, cols = acc.get_shape()
    threads = workgroup_threads(kernel_of(mma), arch.wave_size)
    return warpgroup_instruction(arch, "bf16", (rows, cols), lhs.get_shape()[1], threads)


def warpgroup_staging(root: Operation, arch: GpuArch) -> tuple[dict[tuple[MmaOp, int], int], int]:
    """Where the lane-staged WGMMA operands of the mmas under `root` live in the dynamic shared memory: the
    byte offset of each (mma, operand index), one after another from 0 in program order (a's [M, K], then b's
    as [N, K] — arch.warpgroup_staged_bytes each — or, given [K, N] with N whole swizzle rows, as given:
    arch.mn_major_staged), and their total bytes."""
    offsets: dict[tuple[MmaOp, int], int] = {}
    total = 0
    for op in root.walk():
        if not isinstance(op, MmaOp) or warpgroup_staged(op, arch) is None:
            continue
        lhs, acc = op.lhs.type, op.result.type
        assert isinstance(lhs, TileType) and isinstance(acc, TileType)
        (rows, depth), cols = lhs.get_shape(), acc.get_shape()[1]
        offsets[op, 0] = total
        total += warpgroup_staged_bytes(rows, depth)
        offsets[op, 1] = total
        mn_major = op.rhs_transposed is None and mn_major_staged(cols)
        total += cols * depth * 2 if mn_major else warpgroup_staged_bytes(cols, depth)
    return offsets, total


def read_directly(broadcast: BroadcastOp) -> LoadOp | None:
    """The load a broadcast may read itself: a rank-1 load of a launch operand (main memory, no staging) used
    by this broadcast alone and just before it (nothing between them stores). A lowering that places elements
    on lanes may then read each lane's positions straight from memory instead of passing them between lanes;
    None otherwise."""
    load = broadcast.input.owner
    if not isinstance(load, LoadOp) or not broadcast.input.has_one_use() or load.space is not None:
        return None
    if not isinstance(load.memref, BlockArgument) or load.parent_block() is not broadcast.parent_block():
        return None
    between = load.next_op
    while between is not None and between is not broadcast:
        if between.regions or isinstance(between, StoreOp):
            return None
        between = between.next_op
    return load


def access_bounds(op: LoadOp | StoreOp) -> list[tuple[int, SSAValue]]:
    """(tile axis, bound) per bound of an access: the axes `bound_axes` names, else the tile's last axis
    (one bound)."""
    if op.bound_axes is not None:
        return list(zip(op.bound_axes.get_values(), op.bounds, strict=True))
    if not op.bounds:
        return []
    value_type = op.result.type if isinstance(op, LoadOp) else op.value.type
    assert isinstance(value_type, TileType)
    return [(len(value_type.get_shape()) - 1, bound) for bound in op.bounds]


def single_bound(op: LoadOp | StoreOp) -> tuple[int, SSAValue] | None:
    """The one (tile axis, bound) of an access masked along at most one axis (what a lowering that masks
    one axis reads; the caller refuses several)."""
    bounds = access_bounds(op)
    assert len(bounds) <= 1, f"{op.name}: masked along {len(bounds)} axes"
    return bounds[0] if bounds else None


def access_axes(op: LoadOp | StoreOp) -> tuple[int, ...]:
    """The buffer dimension each axis of the accessed tile runs along: `axes` when given, else the buffer's
    last dimensions (a row-major tile of its innermost elements); () for a scalar."""
    value_type = op.result.type if isinstance(op, LoadOp) else op.value.type
    if not isinstance(value_type, TileType):
        return ()
    if op.axes is not None:
        return tuple(op.axes.get_values())
    rank = len(op.memref.type.get_shape())  # type: ignore[attr-defined]
    return tuple(range(rank - len(value_type.get_shape()), rank))


def _verify_access(op: LoadOp | StoreOp, value_type: Attribute) -> None:
    """A tile's worth of a buffer at `indices`: tile axis i runs along buffer dimension axes[i] from those
    indices (by default the buffer's last dimensions; `axes = array<i64: 0>` reads a column); a scalar is
    one element. Each `bound` masks a tile axis (`bound_axes`, by default the last for one bound): elements
    whose buffer index along it is >= its bound are not read (they read as 0) or written."""
    memref = op.memref.type
    assert isinstance(memref, MemRefType)
    where = f"{op.name}"
    rank = len(memref.get_shape())
    if len(op.indices) != rank:
        raise VerifyException(f"{where}: {len(op.indices)} indices into a rank-{rank} buffer")
    if element_of(value_type) != memref.element_type:
        raise VerifyException(f"{where}: element {element_of(value_type)} of a {memref.element_type} buffer")
    if isinstance(value_type, TileType):
        shape = value_type.get_shape()
        if len(shape) > rank:
            raise VerifyException(f"{where}: a rank-{len(shape)} tile of a rank-{rank} buffer")
        if op.axes is not None:
            axes = op.axes.get_values()
            if len(axes) != len(shape) or len(set(axes)) != len(axes) or not all(0 <= a < rank for a in axes):
                raise VerifyException(
                    f"{where}: axes {list(axes)} must name {len(shape)} distinct dimensions of a rank-{rank} buffer"
                )
        if op.bound_axes is not None:
            bound_axes = op.bound_axes.get_values()
            if (
                len(bound_axes) != len(op.bounds)
                or len(set(bound_axes)) != len(bound_axes)
                or not all(0 <= a < len(shape) for a in bound_axes)
            ):
                raise VerifyException(
                    f"{where}: bound_axes {list(bound_axes)} must name a distinct tile axis per bound "
                    f"({len(op.bounds)})"
                )
        elif len(op.bounds) > 1:
            raise VerifyException(f"{where}: {len(op.bounds)} bounds need bound_axes")
    elif op.bounds or op.axes is not None or op.bound_axes is not None:
        raise VerifyException(f"{where}: a scalar access has no bound or axes")
    if op.space is not None and op.space.data not in MEMORY_SPACES:
        raise VerifyException(f"{where}: space must be one of {MEMORY_SPACES}")


def _verify_staging(op: LoadOp) -> None:
    """An `async` load is a copy engine's (TMA) into the scratchpad, of a matrix tile of a launch operand; a
    `swizzle` of S bytes permutes the 16-byte chunks of each S-byte row of the staged tile (chunk j of row r at
    j ^ (r mod S / 16)), so its rows are exactly S bytes."""
    where = f"{op.name}"
    staged = op.space is not None and op.space.data in SCRATCHPAD_SPACES
    if op.is_async is not None:
        if not staged or not isinstance(op.result.type, TileType) or len(op.result.type.get_shape()) != 2:
            raise VerifyException(f"{where}: an async load stages a matrix tile in {' or '.join(SCRATCHPAD_SPACES)}")
        if not isinstance(op.memref, BlockArgument) or not isinstance(op.memref.owner.parent_op(), KernelOp):
            raise VerifyException(f"{where}: an async load reads a launch operand (a copy engine's descriptor)")
    if op.swizzle is not None:
        swizzle, type_ = _int(op.swizzle), op.result.type
        if not staged or swizzle not in SWIZZLES or not isinstance(type_, TileType):
            raise VerifyException(f"{where}: swizzle is one of {SWIZZLES} bytes, of a tile staged in the scratchpad")
        row_bytes = type_.get_shape()[-1] * element_bytes(type_.element_type)
        if row_bytes != swizzle:
            raise VerifyException(f"{where}: a {swizzle}-byte swizzle needs rows of {swizzle} bytes, got {row_bytes}")


def pipeline_stages(loop: Operation) -> int | None:
    """The stages of a software-pipelined loop (`tessera.tile.stages` on an scf.ForOp): its async loads are
    staged in that many buffers, issued up to stages - 1 iterations ahead of the iteration that reads them."""
    stages = loop.attributes.get(STAGES)
    return None if stages is None else _int(stages)


@irdl_op_definition
class LoadOp(IRDLOperation):
    """`%t = tessera.tile.load %buf[%i, %j] bound %n : memref<?x64xf32> -> !tessera.tile.tile<16xf32>`"""

    name = "tessera.tile.load"
    memref = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    bounds = var_operand_def(IndexType)
    space = opt_prop_def(StringAttr)
    axes = opt_prop_def(DenseArrayBase.constr(I64))
    bound_axes = opt_prop_def(DenseArrayBase.constr(I64))
    is_async = opt_prop_def(UnitAttr, prop_name="async")
    swizzle = opt_prop_def(IntegerAttr[I64])
    result = result_def()
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = "$memref `[` $indices `]` (`bound` $bounds^)? attr-dict `:` type($memref) `->` type($result)"

    def __init__(self, memref: SSAValue, indices: Sequence[SSAValue], result_type: Attribute,
                 bounds: Sequence[SSAValue] = (), axes: Sequence[int] | None = None,
                 bound_axes: Sequence[int] | None = None, space: str | None = None, is_async: bool = False,
                 swizzle: int | None = None) -> None:  # fmt: skip
        properties = _access_properties(axes, bound_axes)
        if space is not None:
            properties["space"] = StringAttr(space)
        if is_async:
            properties["async"] = UnitAttr()
        if swizzle is not None:
            properties["swizzle"] = IntegerAttr(swizzle, i64)
        super().__init__(operands=[memref, list(indices), list(bounds)], result_types=[result_type],
                         properties=properties)  # fmt: skip

    def verify_(self) -> None:
        _verify_access(self, self.result.type)
        _verify_staging(self)

    def tile_bytes(self) -> int:
        type_ = self.result.type
        count = type_.element_count() if isinstance(type_, TileType) else 1
        return count * element_bytes(element_of(type_))


@irdl_op_definition
class StoreOp(IRDLOperation):
    """`tessera.tile.store %t, %buf[%i, %j] bound %n : !tessera.tile.tile<16xf32>, memref<?x64xf32>`; a
    scalar is stored once per program (by one lane on a GPU)."""

    name = "tessera.tile.store"
    value = operand_def()
    memref = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    bounds = var_operand_def(IndexType)
    space = opt_prop_def(StringAttr)
    axes = opt_prop_def(DenseArrayBase.constr(I64))
    bound_axes = opt_prop_def(DenseArrayBase.constr(I64))
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = (
        "$value `,` $memref `[` $indices `]` (`bound` $bounds^)? attr-dict `:` type($value) `,` type($memref)"
    )

    def __init__(self, value: SSAValue, memref: SSAValue, indices: Sequence[SSAValue],
                 bounds: Sequence[SSAValue] = (), axes: Sequence[int] | None = None,
                 bound_axes: Sequence[int] | None = None) -> None:  # fmt: skip
        super().__init__(
            operands=[value, memref, list(indices), list(bounds)],
            properties=_access_properties(axes, bound_axes),
        )

    def verify_(self) -> None:
        _verify_access(self, self.value.type)


@irdl_op_definition
class AllocOp(IRDLOperation):
    """A program's scratch buffer, its contents undefined until the program stores into it:
    `%s = tessera.tile.alloc : memref<4x32xf32>`. Where it lives is the target's choice (a core's cache on a
    CPU, the workgroup's shared memory / LDS on a GPU); it counts in the kernel's footprint. With
    `{space = "global"}` it is a program's buffer in main memory instead (rows a CPU kernel gathers and
    streams, larger than any cache): not in the footprint, and only where the target has a heap (x86)."""

    name = "tessera.tile.alloc"
    result = result_def(MemRefType)
    space = opt_prop_def(StringAttr)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, result_type: MemRefType, space: str | None = None) -> None:
        super().__init__(result_types=[result_type], properties={} if space is None else {"space": StringAttr(space)})

    def verify_(self) -> None:
        type_ = self.result.type
        assert isinstance(type_, MemRefType)
        if any(size < 0 for size in type_.get_shape()):
            raise VerifyException(f"{self.name}: a scratch buffer has a static shape, got {type_}")
        if not isinstance(type_.memory_space, NoneAttr):
            raise VerifyException(f"{self.name}: the target places a scratch buffer, got memory space {type_}")
        if self.space is not None and self.space.data != "global":
            raise VerifyException(f'{self.name}: space is the target\'s fast memory (no space) or "global"')

    def in_fast_memory(self) -> bool:
        return self.space is None

    def bytes(self) -> int:
        type_ = self.result.type
        assert isinstance(type_, MemRefType)
        count = 1
        for size in type_.get_shape():
            count *= size
        return count * element_bytes(type_.element_type)


@irdl_op_definition
class SplatOp(IRDLOperation):
    """A tile of one scalar: `%t = tessera.tile.splat %x : f32 -> !tessera.tile.tile<16xf32>`."""

    name = "tessera.tile.splat"
    scalar = operand_def()
    result = result_def(TileType)
    traits = traits_def(Pure())
    assembly_format = "$scalar attr-dict `:` type($scalar) `->` type($result)"

    def __init__(self, scalar: SSAValue, shape: Sequence[int]) -> None:
        super().__init__(operands=[scalar], result_types=[TileType(shape, scalar.type)])

    def verify_(self) -> None:
        assert isinstance(self.result.type, TileType)
        if self.result.type.element_type != self.scalar.type:
            raise VerifyException(f"{self.name}: a {self.scalar.type} scalar splat to {self.result.type}")


@irdl_op_definition
class BroadcastOp(IRDLOperation):
    """A tile repeated along a new axis: `%m = tessera.tile.broadcast %rows {axis = 1 : i64} :
    !tessera.tile.tile<4xf32> -> !tessera.tile.tile<4x64xf32>` (m[i, j] = rows[i]): how a row's statistic (its
    max, its sum) meets the row's elements in a map."""

    name = "tessera.tile.broadcast"
    input = operand_def(TileType)
    axis = prop_def(IntegerAttr[I64])
    result = result_def(TileType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, axis: int, size: int) -> None:
        assert isinstance(input.type, TileType)
        shape = list(input.type.get_shape())
        shape.insert(axis, size)
        super().__init__(
            operands=[input],
            result_types=[TileType(shape, input.type.element_type)],
            properties={"axis": IntegerAttr(axis, i64)},
        )

    def verify_(self) -> None:
        source, result = self.input.type, self.result.type
        assert isinstance(source, TileType) and isinstance(result, TileType)
        axis, shape = _int(self.axis), list(result.get_shape())
        if not 0 <= axis < len(shape):
            raise VerifyException(f"{self.name}: axis {axis} of a rank-{len(shape)} result")
        del shape[axis]
        if tuple(shape) != source.get_shape() or source.element_type != result.element_type:
            raise VerifyException(f"{self.name}: {source} does not broadcast to {result} along axis {axis}")


@irdl_op_definition
class IotaOp(IRDLOperation):
    """The tile of element positions 0, 1, ..., B - 1 (a rank-1 tile of i32): with a map, the buffer index of each
    element of a loaded tile (to mask a range, or to find where a reduction's value came from)."""

    name = "tessera.tile.iota"
    result = result_def(TileType)
    traits = traits_def(Pure())
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, size: int) -> None:
        super().__init__(result_types=[TileType([size], i32)])

    def verify_(self) -> None:
        assert isinstance(self.result.type, TileType)
        if len(self.result.type.get_shape()) != 1 or self.result.type.element_type != i32:
            raise VerifyException(f"{self.name}: an iota is a rank-1 tile of i32, not {self.result.type}")


@irdl_op_definition
class MapOp(IRDLOperation):
    """An elementwise function: its region maps the elements of its tile operands (a scalar operand is the
    same element everywhere) to one element of the result, with arith and math ops."""

    name = "tessera.tile.map"
    inputs = var_operand_def()
    result = result_def(TileType)
    body = region_def("single_block")
    traits = traits_def(Pure(), IsolatedFromAbove())  # values from outside enter as inputs
    assembly_format = "$inputs attr-dict `:` type($inputs) `->` type($result) $body"

    def __init__(self, inputs: Sequence[SSAValue], result_type: TileType, body: Region) -> None:
        super().__init__(operands=[list(inputs)], result_types=[result_type], regions=[body])

    def verify_(self) -> None:
        assert isinstance(self.result.type, TileType)
        shape = self.result.type.get_shape()
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(f"{self.name}: {len(self.inputs)} inputs but {len(block.args)} block arguments")
        for value, arg in zip(self.inputs, block.args, strict=True):
            if isinstance(value.type, TileType) and value.type.get_shape() != shape:
                raise VerifyException(f"{self.name}: input {value.type} is not of the result's shape {list(shape)}")
            if arg.type != element_of(value.type):
                raise VerifyException(f"{self.name}: block argument {arg.type} for an input of {value.type}")
        last = block.last_op
        if not isinstance(last, YieldOp) or len(last.values) != 1:
            raise VerifyException(f"{self.name}: the region ends in tessera.tile.yield of one element")
        if last.values[0].type != self.result.type.element_type:
            raise VerifyException(f"{self.name}: yields {last.values[0].type} for a {self.result.type}")


@irdl_op_definition
class YieldOp(IRDLOperation):
    """The element a map computes."""

    name = "tessera.tile.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator(), HasParent(MapOp), Pure())
    assembly_format = "$values attr-dict `:` type($values)"

    def __init__(self, *values: SSAValue) -> None:
        super().__init__(operands=[list(values)])


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """A reduction of a tile along `axis` with a combiner (add, max, min; of floats, or signed integers): a rank-1
    tile reduces to a scalar."""

    name = "tessera.tile.reduce"
    combiner = prop_def(StringAttr)
    axis = prop_def(IntegerAttr[I64])
    input = operand_def(TileType)
    result = result_def()
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$combiner $input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, combiner: str, input: SSAValue, axis: int = 0) -> None:
        assert isinstance(input.type, TileType)
        shape = list(input.type.get_shape())
        del shape[axis]
        result = TileType(shape, input.type.element_type) if shape else input.type.element_type
        super().__init__(
            operands=[input],
            result_types=[result],
            properties={"combiner": StringAttr(combiner), "axis": IntegerAttr(axis, i64)},
        )

    def verify_(self) -> None:
        if self.combiner.data not in COMBINERS:
            raise VerifyException(f"{self.name}: combiner must be one of {COMBINERS}, got '{self.combiner.data}'")
        assert isinstance(self.input.type, TileType)
        shape = list(self.input.type.get_shape())
        axis = _int(self.axis)
        if not 0 <= axis < len(shape):
            raise VerifyException(f"{self.name}: axis {axis} of a rank-{len(shape)} tile")
        del shape[axis]
        element = self.input.type.element_type
        expected = TileType(shape, element) if shape else element
        if self.result.type != expected:
            raise VerifyException(f"{self.name}: reducing {self.input.type} along {axis} gives {expected}")


@irdl_op_definition
class ScanOp(IRDLOperation):
    """An inclusive scan of a tile along `axis` with a combiner (add, max, min; of floats, or signed integers):
    element i along the axis combines the input's elements 0..i (a cumulative sum: the chunked SSD scan's
    log-decay). The result has the input's type. Floats may be combined in any order (a target scans a
    vector in log2 steps)."""

    name = "tessera.tile.scan"
    combiner = prop_def(StringAttr)
    axis = prop_def(IntegerAttr[I64])
    input = operand_def(TileType)
    result = result_def(TileType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$combiner $input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, combiner: str, input: SSAValue, axis: int = 0) -> None:
        super().__init__(
            operands=[input],
            result_types=[input.type],
            properties={"combiner": StringAttr(combiner), "axis": IntegerAttr(axis, i64)},
        )

    def verify_(self) -> None:
        if self.combiner.data not in COMBINERS:
            raise VerifyException(f"{self.name}: combiner must be one of {COMBINERS}, got '{self.combiner.data}'")
        assert isinstance(self.input.type, TileType)
        rank, axis = len(self.input.type.get_shape()), _int(self.axis)
        if not 0 <= axis < rank:
            raise VerifyException(f"{self.name}: axis {axis} of a rank-{rank} tile")
        if self.result.type != self.input.type:
            raise VerifyException(
                f"{self.name}: a scan of {self.input.type} gives the same type, not {self.result.type}"
            )


@irdl_op_definition
class MmaOp(IRDLOperation):
    """A matrix multiply-accumulate of tiles: `%d = tessera.tile.mma %a, %b, %c : !tessera.tile.tile<MxKxT>,
    !tessera.tile.tile<KxNxT>, !tessera.tile.tile<MxNxf32> -> !tessera.tile.tile<MxNxf32>`, d = c + a b with
    T f32 or bf16 (widened exactly) and float32 accumulation: each product added to its sum, k ascending (a
    multiply-add, fused where the target has FMA), or as a target's matrix instruction accumulates. With
    `rhs_transposed`, b is given as its transpose, a [N, K] tile (d = c + a bᵀ: rows of keys against rows of
    queries, both read along K). With `rhs_pairs` (bf16 only), b is given with its k in pairs, as a matrix
    unit reads it from memory (AMX's VNNI layout): a [K/2, 2N] tile, given[i, 2n + t] = b[2i + t, n]. Which
    instruction computes it (FMAs on vectors, dot products, AMX, MFMA, WGMMA) is the target lowering's
    choice."""

    name = "tessera.tile.mma"
    lhs = operand_def(TileType)
    rhs = operand_def(TileType)
    acc = operand_def(TileType)
    rhs_transposed = opt_prop_def(UnitAttr)
    rhs_pairs = opt_prop_def(UnitAttr)
    result = result_def(TileType)
    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$lhs `,` $rhs `,` $acc attr-dict `:` type($lhs) `,` type($rhs) `,` type($acc) `->` type($result)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, acc: SSAValue, rhs_transposed: bool = False,
                 rhs_pairs: bool = False) -> None:  # fmt: skip
        properties: dict[str, Attribute] = {"rhs_transposed": UnitAttr()} if rhs_transposed else {}
        if rhs_pairs:
            properties["rhs_pairs"] = UnitAttr()
        super().__init__(operands=[lhs, rhs, acc], result_types=[acc.type], properties=properties)

    def rhs_shape(self) -> tuple[int, int]:
        """b's shape as [K, N], whichever way it is given."""
        assert isinstance(self.rhs.type, TileType)
        rows, cols = self.rhs.type.get_shape()
        if self.rhs_pairs is not None:
            return (rows * 2, cols // 2)
        return (cols, rows) if self.rhs_transposed is not None else (rows, cols)

    def verify_(self) -> None:
        lhs, rhs, acc = self.lhs.type, self.rhs.type, self.acc.type
        assert isinstance(lhs, TileType) and isinstance(rhs, TileType) and isinstance(acc, TileType)
        shapes = [t.get_shape() for t in (lhs, rhs, acc)]
        if any(len(shape) != 2 for shape in shapes):
            raise VerifyException(f"{self.name}: operands are rank-2 tiles, got {lhs}, {rhs}, {acc}")
        if self.rhs_pairs is not None and (
            self.rhs_transposed is not None or not isinstance(rhs.element_type, BFloat16Type) or shapes[1][1] % 2
        ):
            raise VerifyException(f"{self.name}: b in k pairs is a bf16 [K/2, 2N] tile, not transposed, got {rhs}")
        (m, k), (k2, n), (m2, n2) = shapes[0], self.rhs_shape(), shapes[2]
        if k != k2 or (m, n) != (m2, n2):
            given = f"{k2}x{n} (given transposed)" if self.rhs_transposed is not None else f"{k2}x{n}"
            raise VerifyException(f"{self.name}: {m}x{k} times {given} does not accumulate into {m2}x{n2}")
        if lhs.element_type != rhs.element_type or not isinstance(lhs.element_type, Float32Type | BFloat16Type):
            raise VerifyException(f"{self.name}: operands are both f32 or both bf16, got {lhs} and {rhs}")
        if not isinstance(acc.element_type, Float32Type):
            raise VerifyException(f"{self.name}: the accumulator is f32, got {acc}")
        if self.result.type != acc:
            raise VerifyException(f"{self.name}: the result {self.result.type} is not the accumulator's {acc}")


@irdl_op_definition
class ConvertOp(IRDLOperation):
    """A tile or scalar in another element type: f32 -> bf16 rounds to nearest even (NaN stays a quiet NaN,
    as runtime/weights.py rounds), bf16 -> f32 is exact, an integer -> index is a cast."""

    name = "tessera.tile.convert"
    input = operand_def()
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, element: Attribute) -> None:
        super().__init__(operands=[input], result_types=[with_element(input.type, element)])

    def verify_(self) -> None:
        source, target = self.input.type, self.result.type
        if isinstance(source, TileType) != isinstance(target, TileType) or (
            isinstance(source, TileType) and isinstance(target, TileType) and source.get_shape() != target.get_shape()
        ):
            raise VerifyException(f"{self.name}: {source} -> {target} changes the shape")


@irdl_op_definition
class InterleaveOp(IRDLOperation):
    """Two rank-1 tiles [J] as one [2 J], element by element: `%r = tessera.tile.interleave %even, %odd :
    !tessera.tile.tile<64xbf16>, !tessera.tile.tile<64xbf16> -> !tessera.tile.tile<128xbf16>` (r[2 j] =
    even[j], r[2 j + 1] = odd[j]). Rows 2 i and 2 i + 1 of a matrix [K, N] interleaved are row i of its k
    pairs [K / 2, 2 N]: the layout an `mma` with rhs_pairs reads (a matrix unit's right operand), built by a
    kernel from values it computes."""

    name = "tessera.tile.interleave"
    even = operand_def(TileType)
    odd = operand_def(TileType)
    result = result_def(TileType)
    traits = traits_def(Pure())
    assembly_format = "$even `,` $odd attr-dict `:` type($even) `,` type($odd) `->` type($result)"

    def __init__(self, even: SSAValue, odd: SSAValue) -> None:
        assert isinstance(even.type, TileType)
        (size,) = even.type.get_shape()
        super().__init__(operands=[even, odd], result_types=[TileType([2 * size], even.type.element_type)])

    def verify_(self) -> None:
        even, odd, result = self.even.type, self.odd.type, self.result.type
        assert isinstance(even, TileType) and isinstance(result, TileType)
        if even != odd or len(even.get_shape()) != 1:
            raise VerifyException(f"{self.name}: interleaves two rank-1 tiles of one type, not {even} and {odd}")
        if result != TileType([2 * even.get_shape()[0]], even.element_type):
            raise VerifyException(f"{self.name}: {even} interleaved is not {result}")


def dataflow_block(arg_types: Sequence[Attribute]) -> Block:
    """An empty kernel body taking `arg_types` (buffers, scalars, then the program id)."""
    return Block(arg_types=list(arg_types))


TesseraTile = Dialect(
    "tessera.tile",
    [
        KernelOp,
        LaunchOp,
        AllocOp,
        LoadOp,
        StoreOp,
        SplatOp,
        BroadcastOp,
        IotaOp,
        MapOp,
        YieldOp,
        ReduceOp,
        ScanOp,
        MmaOp,
        ConvertOp,
        InterleaveOp,
    ],
    [TileType],
)

"""What every target lowering of dataflow Tile-IR shares: how a tile becomes the values one worker holds, and
the patterns for the ops that only compute on those values (splat, map, convert).

A tile of B elements distributed over `lanes` workers (1 on a CPU core; a wave's 32 or 64 lanes on a GPU,
element e in lane e mod lanes: lowering/simt_lanes.py) is, per worker, a vector<ceil(B / lanes) x element>,
or the element itself where that is one. bf16 is held as its bits (i16) from load to store, so that no target needs bf16 arithmetic:
`tessera.tile.convert` widens exactly and rounds to nearest even in integer ops (runtime/weights.py's
rounding, NaN kept quiet) — not arith.truncf, whose x86 baseline form is a libcall missing from the link and
whose AVX512-BF16 form flushes denormals.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import arith, vector
from xdsl.dialects.builtin import (
    AnyFloat,
    BFloat16Type,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    Float32Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    UnrealizedConversionCastOp,
    VectorType,
    f32,
    i16,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.pattern_rewriter import (
    PatternRewriter,
    RewritePattern,
    TypeConversionPattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint

from tessera.dialects import tile
from tessera.dialects.tile import TileType
from tessera.dialects.upstream import VECTOR_FORMS, ExtUIOp
from tessera.errors import TesseraError


class TileLoweringError(TesseraError):
    """A dataflow kernel a target lowering does not take (yet): an op or a tile shape, named in one line."""


def storage(element: Attribute) -> Attribute:
    """The type a target computes an element in: bf16 as its bits."""
    return i16 if isinstance(element, BFloat16Type) else element


def lowered_type(type_: Attribute, lanes: int) -> Attribute:
    """A tile type as one worker's value (scalars: their storage type)."""
    if not isinstance(type_, TileType):
        return storage(type_)
    per_worker = -(-type_.element_count() // lanes)  # lowering/simt_lanes.py: the last slot may be padded
    element = storage(type_.element_type)
    if lanes == 1 and len(type_.get_shape()) > 1:  # a core's matrix tile keeps its shape: rows are vectors
        return VectorType(element, type_.get_shape())
    return element if per_worker == 1 else VectorType(element, [per_worker])


def with_shape_of(like: Attribute, element: Attribute) -> Attribute:
    """A scalar `element`, or a vector of it shaped like `like`."""
    return VectorType(element, like.get_shape()) if isinstance(like, VectorType) else element


class Emitter:
    """Inserts ops before `anchor` (the op being rewritten) and returns their first result."""

    def __init__(self, rewriter: PatternRewriter, anchor: Operation) -> None:
        self.rewriter = rewriter
        self.anchor = anchor
        # Each constant once per emitter (one op's expansion: its slots ask for the same ones many times);
        # keyed by repr so that -0.0 and 0.0 stay two constants.
        self._constants: dict[tuple[str, Attribute], SSAValue] = {}

    def __call__(self, op: Operation) -> SSAValue:
        self.rewriter.insert_op(op, InsertPoint.before(self.anchor))
        return op.results[0] if op.results else None  # type: ignore[return-value]

    def at_end_of(self, block: Block) -> BlockEmitter:
        """An emitter of the same kind that appends to `block` (a loop body being built)."""
        return BlockEmitter(self.rewriter, self.anchor, block)

    def constant(self, value: int | float, type_: Attribute) -> SSAValue:
        """A constant of a scalar type, or a splat of one when type_ is a vector."""
        key = (repr(value), type_)
        if key not in self._constants:
            self._constants[key] = self._new_constant(value, type_)
        return self._constants[key]

    def _new_constant(self, value: int | float, type_: Attribute) -> SSAValue:
        element = type_.element_type if isinstance(type_, VectorType) else type_
        attr: IntegerAttr | FloatAttr | DenseIntOrFPElementsAttr
        if isinstance(type_, VectorType):
            attr = _splat(type_, value)
        elif isinstance(element, (IntegerType, IndexType)):
            attr = IntegerAttr(int(value), element)
        else:
            assert isinstance(element, AnyFloat)
            attr = FloatAttr(float(value), element)
        return self(arith.ConstantOp(attr, type_))

    def broadcast(self, scalar: SSAValue, like: Attribute) -> SSAValue:
        """`scalar` as a value of type `like` (itself when `like` is a scalar type)."""
        if not isinstance(like, VectorType):
            return scalar
        # A one-element tile not lowered yet (a loop's result, converted last) is its element.
        element = storage(scalar.type.element_type) if isinstance(scalar.type, TileType) else scalar.type
        return self(vector.BroadcastOp(scalar, VectorType(element, like.get_shape())))

    # --- bf16 <-> f32 ------------------------------------------------------------------------------------
    #
    # xDSL 0.74's arith.extui / arith.trunci take scalars only: widening uses the vector form of extui
    # (dialects/upstream.py; x86 selects vpmovzxwd, a shuffle interleaving zeros became lane-crossing
    # vpermt2w); narrowing takes the high halves of the 32-bit lanes by a vector.shuffle of the i16 view
    # (little-endian: the high half is the odd element).

    def widen_bf16(self, bits: SSAValue) -> SSAValue:
        """bf16 bits (i16, or a vector) -> f32 exactly: the bits are the high half of the f32."""
        wide_type = with_shape_of(bits.type, i32)
        if isinstance(bits.type, VectorType):
            assert isinstance(wide_type, VectorType)
            wide = self(ExtUIOp(bits, wide_type))
        else:
            wide = self(arith.ExtUIOp(bits, i32))
        return self(
            arith.BitcastOp(self(arith.ShLIOp(wide, self.constant(16, wide_type))), with_shape_of(bits.type, f32))
        )

    def round_to_bf16(self, value: SSAValue) -> SSAValue:
        """f32 (or a vector) -> bf16 bits (i16), to nearest even; a NaN stays a quiet NaN."""
        int_type = with_shape_of(value.type, i32)
        bits = self(arith.BitcastOp(value, int_type))
        high = self(arith.ShRUIOp(bits, self.constant(16, int_type)))
        odd = self(arith.AndIOp(high, self.constant(1, int_type)))
        rounded = self(arith.AddiOp(bits, self(arith.AddiOp(odd, self.constant(0x7FFF, int_type)))))
        # A NaN (magnitude bits above infinity's) keeps its high bits with the quiet bit set. Branch-free in
        # integer ops (xDSL's arith.cmpf and arith.select are scalar-only): the sign of inf - |bits| spread
        # over the word is all ones exactly for a NaN.
        magnitude = self(arith.AndIOp(bits, self.constant(0x7FFFFFFF, int_type)))
        beyond = self(arith.SubiOp(self.constant(0x7F800000, int_type), magnitude))
        is_nan = self(arith.ShRSIOp(beyond, self.constant(31, int_type)))
        quieted = self(arith.OrIOp(bits, self.constant(0x400000, int_type)))
        difference = self(arith.AndIOp(self(arith.XOrIOp(rounded, quieted)), is_nan))
        chosen = self(arith.XOrIOp(rounded, difference))
        if not isinstance(chosen.type, VectorType):
            return self(arith.TruncIOp(self(arith.ShRUIOp(chosen, self.constant(16, i32))), i16))
        n = chosen.type.element_count()
        halves = self(vector.BitcastOp(chosen, VectorType(i16, [2 * n])))
        high_halves = DenseArrayBase.from_list(i64, [2 * lane + 1 for lane in range(n)])
        return self(vector.ShuffleOp(halves, halves, high_halves, result_type=VectorType(i16, [n])))


class BlockEmitter(Emitter):
    """An Emitter that appends to a block under construction instead of inserting before the anchor."""

    def __init__(self, rewriter: PatternRewriter, anchor: Operation, block: Block) -> None:
        super().__init__(rewriter, anchor)
        self.block = block

    def __call__(self, op: Operation) -> SSAValue:
        self.block.add_op(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]


def _splat(type_: VectorType, value: int | float) -> DenseIntOrFPElementsAttr:
    element = type_.element_type
    count = type_.element_count()
    if isinstance(element, (IntegerType, IndexType)):
        return DenseIntOrFPElementsAttr.from_list(VectorType(element, type_.get_shape()), [int(value)] * count)
    assert isinstance(element, AnyFloat)
    return DenseIntOrFPElementsAttr.from_list(VectorType(element, type_.get_shape()), [float(value)] * count)


# --- patterns ------------------------------------------------------------------------------------------------
#
# The op patterns run first and read the tile types their ops still carry; the values they create have the
# worker's types. LowerTileTypes then converts what is left (loop-carried tiles, loop results).


class TilePattern(RewritePattern):
    """A pattern of a target lowering: `lanes` workers share each tile."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes


class LowerTileTypes(TypeConversionPattern):
    """Every tile-typed result and block argument (loop-carried tiles included) becomes the worker's value."""

    def __init__(self, lanes: int) -> None:
        super().__init__(recursive=False)
        self.lanes = lanes

    def convert_type(self, typ: Attribute) -> Attribute | None:
        # A plain isinstance, not attr_type_rewrite_pattern: its constraint check formats an error message
        # (the attribute printed) for every type that is not a tile — most of the lowering's time.
        return lowered_type(typ, self.lanes) if isinstance(typ, TileType) else None


class LowerSplat(TilePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.SplatOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        rewriter.replace_matched_op([], [emit.broadcast(op.scalar, lowered_type(op.result.type, self.lanes))])


def element_of_held(value: SSAValue) -> Attribute:
    """The element type a worker holds of a tile value, lowered (a vector) or not yet."""
    type_ = value.type
    return type_.element_type if isinstance(type_, VectorType) else storage(tile.element_of(type_))


def is_scalar_operand(value: SSAValue) -> bool:
    """Whether a tile op's operand is a scalar (to broadcast) rather than a tile, lowered or not yet."""
    return not isinstance(value.type, (TileType, VectorType))


class LowerMap(TilePattern):
    """The region's element ops, re-created on the worker's values (vectors of the same length; scalar
    inputs broadcast; constants splat)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.MapOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        rewriter.replace_matched_op([], [mapped(emit, op, list(op.inputs), lowered_type(op.result.type, self.lanes))])


def mapped(emit: Emitter, op: tile.MapOp, inputs: list[SSAValue], like: Attribute) -> SSAValue:
    """The map's region re-created on `inputs`: the worker's values of type `like` (a vector, or one element
    of each input: a scalar `like`), scalar inputs broadcast to it."""
    values: dict[SSAValue, SSAValue] = {}
    for arg, value in zip(op.body.block.args, inputs, strict=True):
        values[arg] = emit.broadcast(value, like) if is_scalar_operand(value) else value
    for element_op in op.body.block.ops:
        if isinstance(element_op, tile.YieldOp):
            return values[element_op.values[0]]
        if isinstance(element_op, arith.ConstantOp):
            attr = element_op.value
            assert isinstance(attr, (IntegerAttr, FloatAttr))
            values[element_op.result] = emit.constant(attr.value.data, with_shape_of(like, element_op.result.type))
            continue
        if element_op.regions:
            raise TileLoweringError(f"{op.name}: element op {element_op.name} has regions")
        op_type = type(element_op)
        if isinstance(like, VectorType):  # comparisons and selects of xDSL's own ops are scalar-only
            op_type = VECTOR_FORMS.get(op_type, op_type)
        new = op_type.create(
            operands=[values[operand] for operand in element_op.operands],
            result_types=[with_shape_of(like, r.type) for r in element_op.results],
            properties=dict(element_op.properties),
            attributes=dict(element_op.attributes),
        )
        emit(new)
        values.update(zip(element_op.results, new.results, strict=True))
    raise AssertionError(f"{op.name}: a map region ends in its yield")


class LowerConvert(TilePattern):
    """A conversion on the worker's value; a core's matrix tile (a 2-D vector) row by row."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: tile.ConvertOp, rewriter: PatternRewriter) -> None:
        emit = Emitter(rewriter, op)
        value = op.input
        held = lowered_type(value.type, self.lanes)  # a loop's tile result keeps its tile type until the end
        if not (isinstance(held, VectorType) and len(held.get_shape()) > 1):
            if isinstance(value.type, TileType):  # the conversion's ops are typed by their operand: the held one
                value = emit(UnrealizedConversionCastOp.get([value], [held]))
            rewriter.replace_matched_op([], [converted(emit, op, value)])
            return
        source, target = _element(op.input.type), _element(op.result.type)
        rows, cols = held.get_shape()
        result = emit.constant(0, VectorType(storage(target), [rows, cols]))
        for i in range(rows):
            row = emit(vector.ExtractOp(value, [i], VectorType(held.element_type, [cols])))
            result = emit(vector.InsertOp(_converted(emit, op, row, source, target), result, [i]))
        rewriter.replace_matched_op([], [result])


def converted(emit: Emitter, op: tile.ConvertOp, value: SSAValue) -> SSAValue:
    """`value` (the worker's value of the op's input, or one element of it) converted as the op says."""
    return _converted(emit, op, value, _element(op.input.type), _element(op.result.type))


def _converted(emit: Emitter, op: tile.ConvertOp, value: SSAValue, source: Attribute, target: Attribute) -> SSAValue:
    if isinstance(source, Float32Type) and isinstance(target, BFloat16Type):
        return emit.round_to_bf16(value)
    if (
        isinstance(source, (BFloat16Type, IntegerType))
        and isinstance(target, Float32Type)
        and (isinstance(source, BFloat16Type) or source == i16)
    ):
        return emit.widen_bf16(value)
    if isinstance(source, IntegerType) and isinstance(target, IndexType):
        return emit(arith.IndexCastOp(value, with_shape_of(value.type, target)))
    raise TileLoweringError(f"{op.name}: no conversion from {source} to {target}")


def _element(type_: Attribute) -> Attribute:
    return type_.element_type if isinstance(type_, (TileType, VectorType)) else type_


SHARED_PATTERNS: Sequence[type[TilePattern]] = (LowerSplat, LowerMap, LowerConvert)

"""Element values and the arith / math ops on them, for the Tile-IR interpreter (interpreters/tile.py).

Representation, one rule for scalars and tiles: a value of element type E is held in E's storage dtype —
f16 / f32 / f64 as float16 / float32 / float64, bf16 as its bits in uint16 (as the runtime's buffers and the
target lowerings hold it), iN as intN (i1 as bool), index as int64. A tile is a numpy array of its shape; a
float scalar is a numpy scalar; integer and index scalars are Python ints, as xDSL's own arith and scf
interpreters (which run the index arithmetic and the loops) expect.

Float ops widen their operands to float64 (exactly) and round the result once to the result type. For
+ - * / and sqrt that is the correctly rounded result: float64's 53 bits are at least twice f32's 24 plus
2, so rounding first to float64 never changes the final rounding. For exp, log, tanh... it is float64's
function rounded, within an ulp of the true value: a reference, not any target's approximation. bf16 is
reached through f32 rounded to odd, then runtime/weights.py's `bf16_bits` (nearest even, NaN kept quiet):
one correct rounding as well. Every op here is elementwise on numpy arrays as on scalars, so that a map's
region runs once on whole tiles (ELEMENTWISE_OPS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    AnyFloat,
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
)
from xdsl.interpreter import Interpreter, InterpreterFunctions, PythonValues, impl, register_impls
from xdsl.interpreters.arith import ArithFunctions
from xdsl.ir import Attribute, Operation

from tessera.dialects.tile import element_of
from tessera.errors import TesseraError
from tessera.runtime.weights import bf16_bits, bf16_to_f32


class TileInterpreterError(TesseraError):
    """A kernel the Tile-IR interpreter cannot run with the buffers given: an op it does not implement, an
    access outside a buffer, a buffer of the wrong type."""


# --- storage -----------------------------------------------------------------------------------------------


def storage_dtype(element: Attribute) -> np.dtype[Any]:
    """The numpy dtype a value of `element` is held in (the module docstring's representation)."""
    if isinstance(element, BFloat16Type):
        return np.dtype(np.uint16)
    floats = {Float16Type: np.float16, Float32Type: np.float32, Float64Type: np.float64}
    for float_type, dtype in floats.items():
        if isinstance(element, float_type):
            return np.dtype(dtype)
    if isinstance(element, IndexType):
        return np.dtype(np.int64)
    if isinstance(element, IntegerType) and element.width.data in (1, 8, 16, 32, 64):
        return np.dtype(bool) if element.width.data == 1 else np.dtype(f"int{element.width.data}")
    raise TileInterpreterError(f"element type {element} has no numpy representation in the interpreter")


def is_float(element: Attribute) -> bool:
    return isinstance(element, AnyFloat)


def unwrap(values: Any, element: Attribute) -> Any:
    """A 0-d result as the scalar the representation holds (a Python int for integers), else the array."""
    values = np.asarray(values)
    if values.ndim:
        return values
    return int(values) if not is_float(element) else values[()]


def widen(values: Any, element: Attribute) -> Any:
    """Float values of `element` (bf16 as bits) as float64, exactly."""
    if isinstance(element, BFloat16Type):
        return bf16_to_f32(np.asarray(values, np.uint16)).astype(np.float64)
    return np.asarray(values).astype(np.float64)


def narrow(values: Any, element: Attribute) -> Any:
    """float64 values rounded once to nearest even in `element`'s storage."""
    wide = np.asarray(values, np.float64)
    if isinstance(element, BFloat16Type):
        narrowed = bf16_bits(_round_to_odd_f32(wide)).reshape(wide.shape)
    else:
        narrowed = wide.astype(storage_dtype(element))
    return unwrap(narrowed, element)


def _round_to_odd_f32(wide: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd (an inexact result gets an odd last bit): rounding that once more,
    to any format of at most 22 bits (bf16's 8), gives the correctly rounded result, which rounding to
    nearest twice does not."""
    nearest = wide.astype(np.float32)
    inexact = (nearest.astype(np.float64) != wide) & ~np.isnan(wide)
    even = (nearest.view(np.uint32) & 1) == 0
    toward = np.where(wide > nearest, np.float32(np.inf), np.float32(-np.inf))
    return np.where(inexact & even, np.nextafter(nearest, toward), nearest)


def wrap(values: Any, element: Attribute) -> Any:
    """Integers wrapped to the width of `element` (an integer or index type), two's complement."""
    width = 64 if isinstance(element, IndexType) else element.width.data  # type: ignore[attr-defined]
    wide = np.asarray(values, np.int64)
    if width == 1:
        return unwrap(wide & 1, element)
    if width < 64:
        half = np.int64(1) << (width - 1)
        wide = ((wide + half) & ((half << 1) - 1)) - half
    return unwrap(wide.astype(storage_dtype(element)), element)


def convert(values: Any, source: Attribute, target: Attribute) -> Any:
    """`tessera.tile.convert`'s element conversion: float <-> float by one rounding (f32 -> bf16 exactly as
    runtime/weights.py rounds), integer <-> integer or index by wrapping."""
    if source == target:
        return values
    if is_float(source) and is_float(target):
        return narrow(widen(values, source), target)
    if not is_float(source) and not is_float(target):
        return wrap(values, target)
    raise TileInterpreterError(f"tessera.tile.convert: no conversion from {source} to {target}")


# --- arith and math on elements ------------------------------------------------------------------------------


def _maximum(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """arith.maximumf: NaN if either is NaN, and +0 above -0 (np.maximum picks either zero)."""
    return np.where(x == y, np.where(np.signbit(x), y, x), np.maximum(x, y))


def _minimum(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(x == y, np.where(np.signbit(x), x, y), np.minimum(x, y))


def _round_half_away(x: np.ndarray) -> np.ndarray:
    # |x| + 0.5 is exact in float64 for every f32 / bf16 / f16 x whose fraction matters.
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


# Float ops as float64 functions of their float64 operands; the result is rounded to the result type.
FLOAT_OPS: dict[type[Operation], Callable[..., Any]] = {
    arith.AddfOp: np.add,
    arith.SubfOp: np.subtract,
    arith.MulfOp: np.multiply,
    arith.DivfOp: np.divide,
    arith.NegfOp: np.negative,
    arith.MaximumfOp: _maximum,
    arith.MinimumfOp: _minimum,
    arith.MaxnumfOp: np.fmax,
    arith.MinnumfOp: np.fmin,
    arith.ExtFOp: np.asarray,
    arith.TruncFOp: np.asarray,
    math.AbsFOp: np.abs,
    math.CopySignOp: np.copysign,
    math.SqrtOp: np.sqrt,
    math.RsqrtOp: lambda x: 1.0 / np.sqrt(x),
    math.ExpOp: np.exp,
    math.Exp2Op: np.exp2,
    math.ExpM1Op: np.expm1,
    math.LogOp: np.log,
    math.Log1pOp: np.log1p,
    math.Log2Op: np.log2,
    math.Log10Op: np.log10,
    math.PowFOp: np.power,
    math.TanhOp: np.tanh,
    math.SinOp: np.sin,
    math.CosOp: np.cos,
    math.TanOp: np.tan,
    math.AtanOp: np.arctan,
    math.Atan2Op: np.arctan2,
    math.SinhOp: np.sinh,
    math.CoshOp: np.cosh,
    math.FloorOp: np.floor,
    math.CeilOp: np.ceil,
    math.TruncOp: np.trunc,
    math.RoundEvenOp: np.rint,
    math.RoundOp: _round_half_away,
}

# arith.cmpf's predicates by number (MLIR's CmpFPredicate); numpy's comparisons are false on NaN, the
# ordered ones, and the unordered ones are the negation of the opposite ordered comparison.
_CMPF: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    0: lambda x, y: np.zeros(np.broadcast(x, y).shape, bool),
    1: np.equal,
    2: np.greater,
    3: np.greater_equal,
    4: np.less,
    5: np.less_equal,
    6: lambda x, y: np.not_equal(x, y) & ~(np.isnan(x) | np.isnan(y)),
    7: lambda x, y: ~(np.isnan(x) | np.isnan(y)),
    8: lambda x, y: np.equal(x, y) | np.isnan(x) | np.isnan(y),
    9: lambda x, y: ~np.less_equal(x, y),
    10: lambda x, y: ~np.less(x, y),
    11: lambda x, y: ~np.greater_equal(x, y),
    12: lambda x, y: ~np.greater(x, y),
    13: np.not_equal,
    14: lambda x, y: np.isnan(x) | np.isnan(y),
    15: lambda x, y: np.ones(np.broadcast(x, y).shape, bool),
}


def _float_impl(function: Callable[..., Any]) -> Callable[..., PythonValues]:
    def run(self: InterpreterFunctions, interpreter: Interpreter, op: Operation, args: PythonValues) -> PythonValues:
        wide = [widen(arg, element_of(operand.type)) for arg, operand in zip(args, op.operands, strict=True)]
        return (narrow(function(*wide), element_of(op.results[0].type)),)

    return run


class ElementFunctions(ArithFunctions):
    """arith and math on the representation above, elementwise on arrays. It subclasses xDSL's
    ArithFunctions (xDSL's documented way to override an op's implementation): integer and index scalars
    stay xDSL's, on Python ints, and integer ops on tiles run in numpy (INTEGER_OPS); constants, float ops,
    cmpf, select and the int <-> float casts are redefined, since xDSL's compute on Python floats (float64)
    and on scalars only."""

    @impl(arith.ConstantOp)
    def run_constant(self, interpreter: Interpreter, op: arith.ConstantOp, args: PythonValues) -> PythonValues:
        value = op.value
        if isinstance(value, FloatAttr):
            return (narrow(value.value.data, op.result.type),)
        if isinstance(value, IntegerAttr):
            return (wrap(value.value.data, op.result.type),)
        raise TileInterpreterError(f"{op.name}: a {type(value).__name__} constant (scalars only)")

    @impl(arith.CmpfOp)
    def run_cmpf(self, interpreter: Interpreter, op: arith.CmpfOp, args: PythonValues) -> PythonValues:
        x, y = (widen(arg, element_of(operand.type)) for arg, operand in zip(args, op.operands, strict=True))
        return (unwrap(_CMPF[op.predicate.value.data](x, y), op.result.type),)

    @impl(arith.SelectOp)
    def run_select(self, interpreter: Interpreter, op: arith.SelectOp, args: PythonValues) -> PythonValues:
        condition, if_true, if_false = args
        if not any(isinstance(arg, np.ndarray) for arg in args):
            return (if_true if condition else if_false,)
        element = element_of(op.result.type)
        chosen = np.asarray(np.where(condition, if_true, if_false), storage_dtype(element))
        return (unwrap(chosen, element),)

    @impl(arith.MinSIOp)
    def run_minsi(self, interpreter: Interpreter, op: arith.MinSIOp, args: PythonValues) -> PythonValues:
        return (min(args),)

    @impl(arith.MaxSIOp)
    def run_maxsi(self, interpreter: Interpreter, op: arith.MaxSIOp, args: PythonValues) -> PythonValues:
        return (max(args),)

    @impl(arith.ExtSIOp)
    def run_extsi(self, interpreter: Interpreter, op: arith.ExtSIOp, args: PythonValues) -> PythonValues:
        return (int(args[0]),)  # integers are Python ints: widening keeps the value

    @impl(arith.TruncIOp)
    def run_trunci(self, interpreter: Interpreter, op: arith.TruncIOp, args: PythonValues) -> PythonValues:
        return (wrap(np.int64(args[0]), element_of(op.result.type)),)

    @impl(arith.SIToFPOp)
    def run_sitofp(self, interpreter: Interpreter, op: arith.SIToFPOp, args: PythonValues) -> PythonValues:
        return (narrow(np.asarray(args[0], np.float64), element_of(op.result.type)),)

    @impl(arith.FPToSIOp)
    def run_fptosi(self, interpreter: Interpreter, op: arith.FPToSIOp, args: PythonValues) -> PythonValues:
        truncated = np.trunc(widen(args[0], element_of(op.input.type)))
        return (wrap(truncated.astype(np.int64), element_of(op.result.type)),)


def _unsigned(values: np.ndarray, element: Attribute) -> np.ndarray:
    """Integers of `element`'s width (held signed) as their unsigned values."""
    width = 64 if isinstance(element, IndexType) else element.width.data  # type: ignore[attr-defined]
    return values.astype(np.uint64) if width == 64 else values & ((1 << width) - 1)


def _unsigned_impl(function: Callable[[Operation, list[np.ndarray]], np.ndarray]) -> Callable[..., PythonValues]:
    """An op on its operands' unsigned values (arith.shrui, arith.extui), on tiles and scalars alike (xDSL has
    no implementation of either): `function(op, operands as unsigned)`, wrapped to the result's width."""

    def run(self: InterpreterFunctions, interpreter: Interpreter, op: Operation, args: PythonValues) -> PythonValues:
        unsigned = [_unsigned(np.asarray(arg).astype(np.int64), element_of(operand.type))
                    for arg, operand in zip(args, op.operands, strict=True)]  # fmt: skip
        result = wrap(function(op, unsigned).astype(np.int64), element_of(op.results[0].type))
        if not any(isinstance(arg, np.ndarray) for arg in args):
            return (int(result),)
        return (result,)

    return run


ElementFunctions.run_shrui = impl(arith.ShRUIOp)(_unsigned_impl(lambda op, xy: xy[0] >> xy[1]))  # type: ignore[attr-defined]
ElementFunctions.run_extui = impl(arith.ExtUIOp)(_unsigned_impl(lambda op, x: x[0]))  # type: ignore[attr-defined]


# Integer ops on tiles (their scalars stay Python ints, as xDSL's scf and arith interpreters keep them):
# computed in int64, then wrapped to the result's width. arith.cmpi's predicates by number (CmpIPredicate).
INTEGER_OPS: dict[type[Operation], Callable[..., Any]] = {
    arith.AddiOp: np.add,
    arith.SubiOp: np.subtract,
    arith.MuliOp: np.multiply,
    arith.AndIOp: np.bitwise_and,
    arith.OrIOp: np.bitwise_or,
    arith.XOrIOp: np.bitwise_xor,
    arith.MinSIOp: np.minimum,
    arith.MaxSIOp: np.maximum,
    arith.ExtSIOp: np.asarray,
    arith.TruncIOp: np.asarray,
    arith.IndexCastOp: np.asarray,
}
_CMPI: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
    np.less, np.less_equal, np.greater, np.greater_equal,
)  # fmt: skip


def _integer_impl(
    on_arrays: Callable[[Any, list[np.ndarray]], Any], scalar: Callable[..., Any]
) -> Callable[..., PythonValues]:
    """An integer op: on tiles, `on_arrays(op, operands as int64)`; on scalars, the implementation it replaces."""

    def run(self: InterpreterFunctions, interpreter: Interpreter, op: Operation, args: PythonValues) -> PythonValues:
        if not any(isinstance(arg, np.ndarray) for arg in args):
            return scalar(self, interpreter, op, args)[0]  # the registered impl's (values, terminator)
        return (on_arrays(op, [np.asarray(arg).astype(np.int64) for arg in args]),)

    return run


def _wrapped(function: Callable[..., np.ndarray]) -> Callable[[Any, list[np.ndarray]], Any]:
    return lambda op, wide: wrap(function(*wide), element_of(op.results[0].type))


def _cmpi(op: arith.CmpiOp, wide: list[np.ndarray]) -> Any:
    x, y = wide
    predicate = op.predicate.value.data
    if predicate >= 6:  # ult, ule, ugt, uge
        x, y = _unsigned(x, element_of(op.lhs.type)), _unsigned(y, element_of(op.lhs.type))
    return unwrap(_CMPI[predicate](x, y), op.result.type)


for _op_type, _function in FLOAT_OPS.items():
    setattr(ElementFunctions, f"run_{_op_type.name.replace('.', '_')}", impl(_op_type)(_float_impl(_function)))
for _op_type, _function in INTEGER_OPS.items():
    _name = f"run_{_op_type.name.split('.')[1].replace('_', '')}"  # xDSL's names: run_addi, run_indexcast...
    setattr(
        ElementFunctions, _name, impl(_op_type)(_integer_impl(_wrapped(_function), getattr(ElementFunctions, _name)))
    )
ElementFunctions.run_cmpi = impl(arith.CmpiOp)(_integer_impl(_cmpi, ElementFunctions.run_cmpi))  # type: ignore[method-assign]
register_impls(ElementFunctions)

# The ops a map's region may hold for it to run once on whole tiles: each computes elementwise on arrays.
# A region with any other op runs element by element.
ELEMENTWISE_OPS: frozenset[type[Operation]] = frozenset(
    {
        *FLOAT_OPS,
        *INTEGER_OPS,
        arith.CmpiOp,
        arith.ConstantOp,
        arith.CmpfOp,
        arith.SelectOp,
        arith.SIToFPOp,
        arith.FPToSIOp,
        arith.ShRUIOp,
        arith.ExtUIOp,
    }
)

"""The Tile-IR interpreter: runs the body of a dataflow `tessera.tile.kernel` (dialects/tile.py) on the CPU,
one program id at a time over its grid, with numpy arrays as the buffers — so that every kernel of kernels/
is checked against a float64 reference once, for every target's tile choice, before any target lowering.

    run_kernel(kernel, [x, weight, out], tokens=5)     # writes out in place, as the target's code would

It is xDSL's Interpreter running xDSL's scf and index arith functions, interpreters/elements.py's
ElementFunctions (float arith and math; how values are represented: a tile is a numpy array, bf16 is held
as uint16 bits as the runtime stores it) and TileFunctions below, one method per tile op:

    load / store   a tile of shape S at `indices` spans the buffer dims `axes` (default: the last len(S)) from
                   them; elements whose index along a bounded axis is >= its bound read 0 and are not
                   written; every element accessed must lie in the buffer. A scalar access is one element.
    memref.dim     the buffer's size (the token count of a dynamic leading dimension).
    alloc          a program's scratch buffer, NaN until stored into.
    splat, map     map's region runs once on whole tiles when each of its ops is elementwise on arrays
                   (elements.ELEMENTWISE_OPS), else element by element: the same values either way.
    reduce         add: the float64 sum rounded once — each target reassociates the sum in its own order,
                   and this is the value they all approximate; max, min: exact.
    convert        one rounding (f32 -> bf16 as runtime/weights.py rounds), or integer wrapping.

A ranged kernel's body runs once, over [0, grid). Grid 0 means one program per token: `tokens`, or else the
rows of the first buffer whose leading dimension is dynamic. Errors — an op without an implementation, an access outside a buffer, buffers or scalars that do
not match the kernel's signature — are one-line TileInterpreterErrors naming the kernel, the program id and
the op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import memref
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, ModuleOp, f32
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.interpreters.scf import ScfFunctions
from xdsl.ir import Operation
from xdsl.utils.exceptions import InterpretationError, VerifyException

from tessera.dialects import tile
from tessera.dialects.tile import TileType, element_of
from tessera.interpreters import elements
from tessera.interpreters.elements import (
    ELEMENTWISE_OPS,
    ElementFunctions,
    TileInterpreterError,
    is_float,
    narrow,
    storage_dtype,
    unwrap,
    widen,
    wrap,
)

# --- the tile ops -------------------------------------------------------------------------------------------

Window = tuple[tuple[Any, ...], tuple[slice, ...], tuple[int, ...]]
# tessera.tile.reduce's combiners; float sums run in float64 (pairwise) and round once.
_COMBINERS: dict[str, np.ufunc] = {"add": np.add, "max": np.maximum, "min": np.minimum}


def _split_access(op: tile.LoadOp | tile.StoreOp, args: Sequence[Any]) -> tuple[list[int], dict[int, int]]:
    """An access's indices and its bounds by tile axis, from its operand values (after the memref)."""
    count = len(op.indices)
    axes = [axis for axis, _ in tile.access_bounds(op)]
    return list(args[:count]), dict(zip(axes, args[count:], strict=True))


def _window(op: tile.LoadOp | tile.StoreOp, buffer: np.ndarray, indices: list[int], tile_shape: Sequence[int],
            bounds: dict[int, int]) -> Window | None:  # fmt: skip
    """Where a load or store touches its buffer: (the buffer's elements, their place in the tile, the order of
    the tile's axes among the buffer's), or None when a bound masks the whole tile. Every element it touches
    must lie in the buffer."""
    axes = tile.access_axes(op)
    extents = [1] * len(indices)
    for axis, size in zip(axes, tile_shape, strict=True):
        extents[axis] = size
    for tile_axis, bound in bounds.items():
        limited = axes[tile_axis]
        extents[limited] = min(extents[limited], bound - indices[limited])
        if extents[limited] <= 0:
            return None
    for axis, (start, extent, size) in enumerate(zip(indices, extents, buffer.shape, strict=True)):
        if start < 0 or start + extent > size:
            span = f"index {start}" if extent == 1 else f"indices [{start}, {start + extent})"
            of = f" of '{op.memref.name_hint}'" if op.memref.name_hint else ""
            at = f"{indices}" if not bounds else f"{indices} bound {list(bounds.values())}"
            raise TileInterpreterError(f"{op.name}{of} at {at}: {span} of dimension {axis} is outside its size {size}")
    inside = tuple(
        slice(start, start + extent) if axis in axes else start
        for axis, (start, extent) in enumerate(zip(indices, extents, strict=True))
    )
    within = tuple(slice(0, extents[axis]) for axis in axes)
    return inside, within, tuple(int(i) for i in np.argsort(axes))


@register_impls
class TileFunctions(InterpreterFunctions):
    """tessera.tile's dataflow ops on numpy values (the module docstring says what each does)."""

    @impl(tile.LoadOp)
    def run_load(self, interpreter: Interpreter, op: tile.LoadOp, args: PythonValues) -> PythonValues:
        buffer, *rest = args
        indices, bounds = _split_access(op, rest)
        type_ = op.result.type
        if not isinstance(type_, TileType):
            window = _window(op, buffer, indices, (), {})
            assert window is not None
            return (unwrap(buffer[window[0]], type_),)
        values = np.zeros(type_.get_shape(), buffer.dtype)
        window = _window(op, buffer, indices, type_.get_shape(), bounds)
        if window is not None:
            inside, within, order = window
            values[within] = np.transpose(buffer[inside], order)
        return (values,)

    @impl(tile.StoreOp)
    def run_store(self, interpreter: Interpreter, op: tile.StoreOp, args: PythonValues) -> PythonValues:
        value, buffer, *rest = args
        indices, bounds = _split_access(op, rest)
        shape = op.value.type.get_shape() if isinstance(op.value.type, TileType) else ()
        window = _window(op, buffer, indices, shape, bounds)
        if window is not None:
            inside, within, order = window
            buffer[inside] = np.transpose(value[within], np.argsort(order)) if shape else value
        return ()

    @impl(tile.AllocOp)
    def run_alloc(self, interpreter: Interpreter, op: tile.AllocOp, args: PythonValues) -> PythonValues:
        type_ = op.result.type
        assert isinstance(type_, MemRefType)
        element = type_.element_type
        dtype = storage_dtype(element)
        # Undefined contents: NaN (bf16's quiet NaN bits), so that a read before any store shows.
        fill: float | int = np.nan if np.issubdtype(dtype, np.floating) else (0x7FC0 if is_float(element) else 0)
        return (np.full(type_.get_shape(), fill, dtype),)

    @impl(memref.DimOp)
    def run_dim(self, interpreter: Interpreter, op: memref.DimOp, args: PythonValues) -> PythonValues:
        buffer, dimension = args
        return (int(buffer.shape[dimension]),)

    @impl(tile.SplatOp)
    def run_splat(self, interpreter: Interpreter, op: tile.SplatOp, args: PythonValues) -> PythonValues:
        assert isinstance(op.result.type, TileType)
        return (np.full(op.result.type.get_shape(), args[0], storage_dtype(op.result.type.element_type)),)

    @impl(tile.BroadcastOp)
    def run_broadcast(self, interpreter: Interpreter, op: tile.BroadcastOp, args: PythonValues) -> PythonValues:
        assert isinstance(op.result.type, TileType)
        expanded = np.expand_dims(args[0], int(op.axis.value.data))
        return (np.broadcast_to(expanded, op.result.type.get_shape()).copy(),)

    @impl(tile.InterleaveOp)
    def run_interleave(self, interpreter: Interpreter, op: tile.InterleaveOp, args: PythonValues) -> PythonValues:
        return (np.stack(args, axis=-1).reshape(-1),)

    @impl(tile.IotaOp)
    def run_iota(self, interpreter: Interpreter, op: tile.IotaOp, args: PythonValues) -> PythonValues:
        assert isinstance(op.result.type, TileType)
        return (np.arange(op.result.type.get_shape()[0], dtype=np.int32),)

    @impl(tile.MapOp)
    def run_map(self, interpreter: Interpreter, op: tile.MapOp, args: PythonValues) -> PythonValues:
        result_type = op.result.type
        assert isinstance(result_type, TileType)
        shape, dtype = result_type.get_shape(), storage_dtype(result_type.element_type)
        region_ops = [element_op for element_op in op.body.block.ops if not isinstance(element_op, tile.YieldOp)]
        if all(type(element_op) in ELEMENTWISE_OPS for element_op in region_ops):
            (value,) = interpreter.run_ssacfg_region(op.body, tuple(args), op.name)
            return (np.broadcast_to(np.asarray(value, dtype), shape).copy(),)
        result = np.empty(shape, dtype)
        for index in np.ndindex(*shape):
            element_args = tuple(
                unwrap(arg[index], value.type.element_type) if isinstance(value.type, TileType) else arg
                for arg, value in zip(args, op.inputs, strict=True)
            )
            (result[index],) = interpreter.run_ssacfg_region(op.body, element_args, op.name)
        return (result,)

    @impl_terminator(tile.YieldOp)
    def run_yield(
        self, interpreter: Interpreter, op: tile.YieldOp, args: PythonValues
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()

    @impl(tile.ReduceOp)
    def run_reduce(self, interpreter: Interpreter, op: tile.ReduceOp, args: PythonValues) -> PythonValues:
        return (_along_axis(op, args[0], "reduce"),)

    @impl(tile.ScanOp)
    def run_scan(self, interpreter: Interpreter, op: tile.ScanOp, args: PythonValues) -> PythonValues:
        """Each prefix combined exactly, rounded once (a target's log-step order rounds at each step: its
        bounds say so)."""
        return (_along_axis(op, args[0], "accumulate"),)

    @impl(tile.MmaOp)
    def run_mma(self, interpreter: Interpreter, op: tile.MmaOp, args: PythonValues) -> PythonValues:
        """c + a b in float64, rounded once to f32 (a target's FMAs round at each k: its bounds say so)."""
        a, b, c = args
        element = element_of(op.lhs.type)
        b = b.T if op.rhs_transposed is not None else b
        if op.rhs_pairs is not None:  # given[i, 2n + t] = b[2i + t, n]
            pairs, columns = b.shape
            b = b.reshape(pairs, columns // 2, 2).transpose(0, 2, 1).reshape(pairs * 2, columns // 2)
        product = widen(a, element).astype(np.float64) @ widen(b, element).astype(np.float64)
        return (narrow(widen(c, f32) + product, f32),)

    @impl(tile.ConvertOp)
    def run_convert(self, interpreter: Interpreter, op: tile.ConvertOp, args: PythonValues) -> PythonValues:
        return (elements.convert(args[0], element_of(op.input.type), element_of(op.result.type)),)


# --- running a kernel ----------------------------------------------------------------------------------------


@dataclass
class _Running(Interpreter.Listener):
    """The ops being interpreted, innermost last: the op an error names."""

    ops: list[Operation] = field(default_factory=list)

    def will_interpret_op(self, op: Operation, args: PythonValues) -> None:
        self.ops.append(op)

    def did_interpret_op(self, op: Operation, results: PythonValues) -> None:
        self.ops.pop()


def run_kernel(kernel: tile.KernelOp, buffers: Sequence[np.ndarray], tokens: int | None = None,
               scalars: Mapping[str, int] | None = None,
               program_range: tuple[int, int] | None = None) -> None:  # fmt: skip
    """Run every program of `kernel` over `buffers` (its launch operands, in order; written in place).

    tokens: the call's token count, the grid of a kernel with grid 0 (default: the rows of the first buffer
    whose leading dimension is dynamic); scalars: the values of the scalars the kernel reads, by name;
    program_range: the programs [first, end) one call of a ranged body runs (default: the whole grid)."""
    where = f"{kernel.name} @{kernel.sym_name.data}"
    if not kernel.is_dataflow():
        raise TileInterpreterError(f"{where}: kind '{kernel.kind.data}' has no dataflow body to interpret")
    try:
        kernel.verify()
    except VerifyException as error:
        raise TileInterpreterError(f"{where}: {_first_line(error)}") from None
    _check_buffers(kernel, buffers, where)
    arguments = (*buffers, *_scalar_values(kernel, scalars or {}, where))
    grid = int(kernel.grid.value.data) or _token_count(kernel, buffers, tokens, where)
    running = _Running()
    interpreter = Interpreter(ModuleOp([]), index_bitwidth=64, listeners=(running,))
    for functions in (ElementFunctions(), ScfFunctions(), TileFunctions()):
        interpreter.register_implementations(functions)
    # Overflow to inf and NaN are IEEE results every target computes too, not interpreter failures.
    with np.errstate(all="ignore"):
        # A ranged body runs its range (the whole grid unless given) in one call.
        calls: list[tuple[int, ...]] = (
            [program_range or (0, grid)] if kernel.ranged is not None else [(program,) for program in range(grid)]
        )
        if kernel.token_block is not None:  # a second grid dimension: the call's token blocks
            block = int(kernel.token_block.value.data)
            blocks = -(-_token_count(kernel, buffers, tokens, where) // block)
            calls = [(program, row) for (program,) in calls for row in range(blocks)]
        for programs in calls:
            if kernel.ranged is not None:
                program = "programs [{}, {})".format(*programs)
            else:
                program = "program " + ", ".join(map(str, programs))
            try:
                interpreter.run_ssacfg_region(kernel.body, (*arguments, *programs), where)
            except TileInterpreterError as error:
                raise TileInterpreterError(f"{where}, {program}: {_first_line(error)}") from None
            except Exception as error:
                op = running.ops[-1].name if running.ops else "?"
                kind = "" if isinstance(error, InterpretationError) else f"{type(error).__name__}: "
                raise TileInterpreterError(f"{where}, {program}: {op}: {kind}{_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_buffers(kernel: tile.KernelOp, buffers: Sequence[np.ndarray], where: str) -> None:
    """Each buffer an array of its memref's element storage (elements.py), rank and static sizes."""
    params = kernel.buffers()
    names = [arg.name_hint or f"#{i}" for i, arg in enumerate(params)]
    if len(buffers) != len(params):
        raise TileInterpreterError(f"{where}: {len(buffers)} buffers for a kernel taking {len(params)} ({names})")
    for name, arg, array in zip(names, params, buffers, strict=True):
        memref = arg.type
        assert isinstance(memref, MemRefType)
        dtype = storage_dtype(memref.element_type)
        shape = memref.get_shape()
        fits = isinstance(array, np.ndarray) and array.dtype == dtype and array.ndim == len(shape)
        if not fits or any(want not in (DYNAMIC_INDEX, got) for want, got in zip(shape, array.shape, strict=True)):
            got = f"{array.dtype} {list(array.shape)}" if isinstance(array, np.ndarray) else type(array).__name__
            raise TileInterpreterError(f"{where}: buffer '{name}' is {got}, the kernel takes a {memref} ({dtype})")


def _scalar_values(kernel: tile.KernelOp, scalars: Mapping[str, int], where: str) -> list[int]:
    names = kernel.scalar_names()
    if sorted(scalars) != sorted(names):
        raise TileInterpreterError(f"{where}: takes the scalars {list(names)}, given {sorted(scalars)}")
    return [int(scalars[name]) for name in names]


def _token_count(kernel: tile.KernelOp, buffers: Sequence[np.ndarray], tokens: int | None, where: str) -> int:
    if tokens is not None:
        if tokens < 0:
            raise TileInterpreterError(f"{where}: tokens must be >= 0, got {tokens}")
        return tokens
    for arg, array in zip(kernel.buffers(), buffers, strict=True):
        shape = arg.type.get_shape()  # type: ignore[attr-defined]
        if shape and shape[0] == DYNAMIC_INDEX:
            return int(array.shape[0])
    raise TileInterpreterError(f"{where}: one program per token, but no buffer has a dynamic leading dimension")


def _along_axis(op: tile.ReduceOp | tile.ScanOp, value: Any, method: str) -> Any:
    """The op's combiner along its axis (numpy's ufunc `method`: reduce or accumulate), exactly (floats in
    float64, integers in int64), rounded once to the element type."""
    assert isinstance(op.input.type, TileType)
    element = op.input.type.element_type
    combine = getattr(_COMBINERS[op.combiner.data], method)
    axis = int(op.axis.value.data)
    if is_float(element):
        return narrow(combine(widen(value, element), axis=axis), element)
    return wrap(combine(np.asarray(value, np.int64), axis=axis), element)

"""What the kernel emitters of every target share to write MLIR text: a function-body builder (fresh SSA names,
indentation, constants hoisted to the entry block, scf.for / scf.if regions), the float literal, and the
f32 -> bf16 rounding (the GPU emitters left: lowering/rocdl/).

The bf16 rounding is integer bit operations, to nearest even (not arith.truncf, whose lowering differs
per target: a libcall on CPUs without AVX512-BF16, denormals flushed by vcvtneps2bf16).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


def float_literal(value: float) -> str:
    """An MLIR float literal that parses to exactly this double (MLIR then rounds it to the constant's type):
    the shortest round-trip digits with the '.' MLIR wants (1.0e-05, not 1e-05); infinities and NaN as the
    hexadecimal f32 bits."""
    if not math.isfinite(value):
        return f"0x{struct.unpack('>I', struct.pack('>f', value))[0]:08X}"
    mantissa, e, exponent = repr(float(value)).partition("e")
    return (mantissa if "." in mantissa else mantissa + ".0") + e + exponent


@dataclass
class Loop:
    """An open scf.for: its induction variable, iter_args and (after the block) results. A loop with
    carried values must yield them: `loop.yield_(...)` or appending to `loop.yielded`."""

    iv: str
    args: list[str]
    results: list[str]
    yielded: list[str] = field(default_factory=list)

    def yield_(self, *values: str) -> None:
        self.yielded = list(values)


class MlirBuilder:
    """The lines of one func.func body: fresh SSA names (`%{prefix}{hint}{n}`), constants defined once at the
    top (`%{prefix}cst_{n}`, so that they never clash with a fresh name) and nested regions."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.lines: list[str] = []
        self.constants: dict[tuple[str, str], tuple[str, str]] = {}  # (literal, type) -> (name, definition)
        self.count = 0
        self.depth = 1

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"%{self.prefix}{hint}{self.count}"

    def emit(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    def let(self, hint: str, rhs: str) -> str:
        """`%name = rhs` with a fresh name; returns the name."""
        name = self.fresh(hint)
        self.emit(f"{name} = {rhs}")
        return name

    def const(self, literal: str, type_: str) -> str:
        """A constant (a splat when type_ is a vector), defined once at the top of the function."""
        key = (literal, type_)
        if key not in self.constants:
            name = f"%{self.prefix}cst_{len(self.constants)}"
            value = f"dense<{literal}>" if type_.startswith("vector") else literal
            self.constants[key] = (name, f"{name} = arith.constant {value} : {type_}")
        return self.constants[key][0]

    def index(self, value: int) -> str:
        return self.const(str(value), "index")

    def f32(self, value: float, type_: str = "f32") -> str:
        """An f32 constant (or a splat of one, type_ a vector of f32)."""
        return self.const(float_literal(value), type_)

    @contextmanager
    def loop(
        self, lo: str, hi: str, step: str, carried: list[tuple[str, str]] | None = None, unroll: bool = True
    ) -> Iterator[Loop]:
        """scf.for lo..hi by step; `carried` = [(initial value, type)] per iter_arg, yielded by the block.
        unroll=False keeps LLVM from unrolling it (the annotation reaches the loop's back edge through
        convert-scf-to-cf): for a body that is already a wide step, whose full unroll would hoist every
        step's loads at once and run out of registers."""
        carried = carried or []
        loop = Loop(self.fresh("i"), [self.fresh("a") for _ in carried], [])
        header = f"scf.for {loop.iv} = {lo} to {hi} step {step}"
        if carried:
            result = self.fresh("r")
            loop.results = [result] if len(carried) == 1 else [f"{result}#{i}" for i in range(len(carried))]
            inits = ", ".join(f"{arg} = {init}" for arg, (init, _) in zip(loop.args, carried, strict=True))
            types = ", ".join(type_ for _, type_ in carried)
            arity = "" if len(carried) == 1 else f":{len(carried)}"
            header = f"{result}{arity} = {header} iter_args({inits}) -> ({types})"
        self.emit(header + " {")
        self.depth += 1
        yield loop
        if carried:
            if len(loop.yielded) != len(carried):
                raise AssertionError(f"the loop carries {len(carried)} values but yields {len(loop.yielded)}")
            self.emit(f"scf.yield {', '.join(loop.yielded)} : {', '.join(type_ for _, type_ in carried)}")
        self.depth -= 1
        self.emit("}" if unroll else "} {loop_annotation = #llvm.loop_annotation<unroll = <disable = true>>}")

    @contextmanager
    def if_else(self, cond: str) -> Iterator[Callable[[], None]]:
        """scf.if without results; call the yielded function to start the else region (or never)."""
        self.emit(f"scf.if {cond} {{")
        self.depth += 1

        def otherwise() -> None:
            self.lines.append("  " * (self.depth - 1) + "} else {")

        yield otherwise
        self.depth -= 1
        self.emit("}")

    def if_yield(self, cond: str, types: list[str], then: Callable[[], list[str]],
                 otherwise: Callable[[], list[str]]) -> list[str]:  # fmt: skip
        """scf.if with results: each branch function emits its ops and returns the values it yields."""
        result = self.fresh("if")
        arity = "" if len(types) == 1 else f":{len(types)}"
        self.emit(f"{result}{arity} = scf.if {cond} -> ({', '.join(types)}) {{")
        for branch, closing in ((then, "} else {"), (otherwise, "}")):
            self.depth += 1
            self.emit(f"scf.yield {', '.join(branch())} : {', '.join(types)}")
            self.depth -= 1
            self.emit(closing)
        return [result] if len(types) == 1 else [f"{result}#{i}" for i in range(len(types))]

    def constant_lines(self) -> list[str]:
        return ["  " * self.depth + definition for _, definition in self.constants.values()]

    def function(self, name: str, params: str) -> str:
        """The func.func: `params` is its argument list, the body these constants and lines, then return."""
        body = "\n".join(["  " + definition for _, definition in self.constants.values()] + self.lines)
        return f"func.func @{name}({params}) {{\n{body}\n  return\n}}\n"


# --- f32 -> bf16 (scalar or vector types) -----------------------------------------------------------------


def _element(type_: str, old: str, new: str) -> str:
    """type_ with its element type replaced: f32 -> i32, vector<16xbf16> -> vector<16xi16>."""
    return type_[: -len(old) - 1] + new + ">" if type_.startswith("vector") else new


def f32_to_bf16_bits(b: MlirBuilder, value: str, type_: str, quiet_nan: bool = False) -> str:
    """Round f32 (type_: f32 or a vector of it) to bfloat16 bits (i16) to nearest even, in integer ops:
    weights.bf16_bits, bit for bit, when quiet_nan (NaN kept a quiet NaN; without it, a NaN whose payload is
    in the low bits only may round to infinity)."""
    i32, i16 = _element(type_, "f32", "i32"), _element(type_, "f32", "i16")
    bits = b.let("y", f"arith.bitcast {value} : {type_} to {i32}")
    sixteen = b.const("16", i32)
    high = b.let("y", f"arith.shrui {bits}, {sixteen} : {i32}")
    odd = b.let("y", f"arith.andi {high}, {b.const('1', i32)} : {i32}")
    half = b.let("y", f"arith.addi {odd}, {b.const('32767', i32)} : {i32}")
    total = b.let("y", f"arith.addi {bits}, {half} : {i32}")
    rounded = b.let("y", f"arith.shrui {total}, {sixteen} : {i32}")
    if quiet_nan:
        nan = b.let("y", f"arith.cmpf uno, {value}, {value} : {type_}")
        quiet = b.let("y", f"arith.ori {high}, {b.const('64', i32)} : {i32}")
        mask = f"{_element(type_, 'f32', 'i1')}, " if type_.startswith("vector") else ""
        rounded = b.let("y", f"arith.select {nan}, {quiet}, {rounded} : {mask}{i32}")
    return b.let("y", f"arith.trunci {rounded} : {i32} to {i16}")

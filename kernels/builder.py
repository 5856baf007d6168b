"""KernelBuilder: what a kernel in kernels/ is written with — xDSL's Builder over a dataflow Tile-IR body
(dialects/tile.py), with the index and float arithmetic, tile ops, loops and element functions a kernel
needs, so that a kernel reads as its algorithm.

    k = KernelBuilder({"x": x_type, "out": out_type}, scalars=())
    x, out = k.buffers
    row = k.load(x, [k.program_id, k.index(0)], [64])
    squares = k.map([row], lambda e, v: e.mulf(v, v))
    total = k.reduce("add", squares)
    ...
    body = k.finish()          # the block for a tessera.tile.kernel

Element functions (`map`'s lambda and scalar code alike) use the same methods: inside a map they build the
region's element ops, outside it scalar ops of the kernel body. Constants are created once per block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from xdsl.builder import Builder, InsertPoint
from xdsl.dialects import arith, math, memref, scf
from xdsl.dialects.builtin import AnyFloat, FloatAttr, IndexType, IntegerAttr, IntegerType, MemRefType, f32, i32, i64
from xdsl.dialects.utils import FastMathFlag
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from tessera.dialects import tile
from tessera.dialects.tile import TileType, element_of

INDEX = IndexType()
# A product and the sum it feeds may fuse into one FMA where the target has it (one rounding instead of two:
# never less accurate; each kernel's bounds assume the two).
CONTRACT = arith.FastMathFlagsAttr([FastMathFlag.ALLOW_CONTRACT])
# A kernel's Tile-IR dims (sizes, epsilon, dtype names), as its builder reads them.
Dims = Mapping[str, int | float | str]
# An access's mask: none, one bound on the tile's last axis, or {tile axis: bound}.
Bound = SSAValue | Mapping[int, SSAValue] | None
# How a load stages its tile in the scratchpad: (memory space, asynchronous, swizzle bytes or None).
Staging = tuple[str, bool, int | None]


def _bounds(bound: Bound) -> tuple[list[SSAValue], list[int] | None]:
    """The bounds operands and bound_axes of an access (none for one bound on the last axis)."""
    if bound is None:
        return [], None
    if isinstance(bound, SSAValue):
        return [bound], None
    return list(bound.values()), list(bound)


@dataclass
class Loop:
    """An open scf.for: its induction variable and carried values; `yield_` sets what the body carries on."""

    iv: SSAValue
    args: list[SSAValue]
    results: list[SSAValue] = field(default_factory=list)
    yielded: list[SSAValue] = field(default_factory=list)

    def yield_(self, *values: SSAValue) -> None:
        self.yielded = list(values)


class KernelBuilder:
    """The body of one dataflow kernel: block arguments `buffers` (memrefs, launch order), `scalars` (index,
    named by KERNEL_SCALARS) and `program_id`."""

    def __init__(self, buffers: Mapping[str, MemRefType], scalars: Sequence[str] = (), ranged: bool = False,
                 token_blocks: bool = False) -> None:  # fmt: skip
        """`buffers`: the launch operands by name, in launch order (the names are the block arguments' and,
        on a GPU, the kernel parameters'). `ranged`: the body runs the programs [first, end) of its grid
        (`program_range`; its kernel op is marked `ranged`) instead of the one `program_id`. `token_blocks`:
        the grid has a second dimension over blocks of the call's tokens (`token_block_id`; the kernel op's
        `token_block` says how many tokens a block holds)."""
        programs = ["first", "end"] if ranged else ["t", "r"] if token_blocks else ["t"]
        self.block = tile.dataflow_block([*buffers.values(), *(INDEX for _ in scalars), *(INDEX for _ in programs)])
        args = self.block.args
        for arg, name in zip(args, [*buffers, *scalars, *programs], strict=True):
            arg.name_hint = name
        self.ranged = ranged
        self.buffers = list(args[: len(buffers)])
        self.scalars = dict(zip(scalars, args[len(buffers) : len(args) - len(programs)], strict=True))
        self.program_range = tuple(args[-2:]) if ranged else ()
        self._programs = args[len(args) - len(programs) :]
        self._builder = Builder(InsertPoint.at_end(self.block))
        self._constants: dict[tuple[Block, str, float | int], SSAValue] = {}

    @property
    def program_id(self) -> SSAValue:
        assert not self.ranged, "a ranged body runs program_range, not one program id"
        return self._programs[0]

    @property
    def token_block_id(self) -> SSAValue:
        assert len(self._programs) == 2 and not self.ranged, "a body over token blocks (token_blocks=True)"
        return self._programs[1]

    def finish(self) -> Block:
        return self.block

    # --- insertion -----------------------------------------------------------------------------------------

    def _insert(self, op: Operation) -> SSAValue:
        """Insert `op` and return its result (ops without one are inserted for their effect)."""
        self._builder.insert(op)
        return op.results[0] if op.results else None  # type: ignore[return-value]

    @contextmanager
    def _at_end(self, block: Block) -> Iterator[None]:
        saved = self._builder.insertion_point
        self._builder.insertion_point = InsertPoint.at_end(block)
        try:
            yield
        finally:
            self._builder.insertion_point = saved

    def _constant(self, value: float | int, type_: Attribute) -> SSAValue:
        """One constant per (innermost function-like block, type, value), placed at that block's start."""
        block = self.block
        key = (block, str(type_), value)
        if key not in self._constants:
            attr: IntegerAttr | FloatAttr
            if isinstance(type_, (IndexType, IntegerType)):
                attr = IntegerAttr(int(value), type_)
            else:
                assert isinstance(type_, AnyFloat)
                attr = FloatAttr(float(value), type_)
            op = arith.ConstantOp(attr, type_)
            first = block.first_op
            if first is None:
                block.add_op(op)
            else:
                block.insert_op_before(op, first)
            self._constants[key] = op.result
        return self._constants[key]

    @staticmethod
    def known(value: SSAValue) -> int | None:
        """The integer `value` holds when it is a constant (what the kernel knows when it is built), else None."""
        op = value.owner
        if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
            return op.value.value.data
        return None

    # --- scalars ----------------------------------------------------------------------------------------

    def index(self, value: int) -> SSAValue:
        return self._constant(value, INDEX)

    def f32(self, value: float) -> SSAValue:
        return self._constant(value, f32)

    def i32(self, value: int) -> SSAValue:
        return self._constant(value, i32)

    def i64(self, value: int) -> SSAValue:
        return self._constant(value, i64)

    def cast(self, x: SSAValue, type_: Attribute) -> SSAValue:
        """An integer or index value as another integer or index type (index_cast to or from index; signed
        widening or truncation between integers)."""
        if x.type == type_:
            return x
        if isinstance(x.type, IndexType) or isinstance(type_, IndexType):
            return self._insert(arith.IndexCastOp(x, type_))
        assert isinstance(x.type, IntegerType) and isinstance(type_, IntegerType)
        if type_.width.data > x.type.width.data:
            return self._insert(arith.ExtSIOp(x, type_))
        return self._insert(arith.TruncIOp(x, type_))

    def addi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.AddiOp(x, y))

    def muli(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.MuliOp(x, y))

    def subi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.SubiOp(x, y))

    def minsi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.MinSIOp(x, y))

    def maxsi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.MaxSIOp(x, y))

    def andi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.AndIOp(x, y))

    def ori(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.OrIOp(x, y))

    def xori(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.XOrIOp(x, y))

    def shrui(self, x: SSAValue, y: SSAValue) -> SSAValue:
        """x >> y, zeros shifted in (x's bits as unsigned)."""
        return self._insert(arith.ShRUIOp(x, y))

    def extui(self, x: SSAValue, type_: IntegerType) -> SSAValue:
        """An integer widened with zeros (x's bits as unsigned)."""
        return self._insert(arith.ExtUIOp(x, type_))

    def sitofp(self, x: SSAValue) -> SSAValue:
        """A signed integer as an f32 (exact below 2^24 in magnitude)."""
        return self._insert(arith.SIToFPOp(x, f32))

    def cmpi(self, predicate: str, x: SSAValue, y: SSAValue) -> SSAValue:
        """An i1: `predicate` (MLIR's: "slt", "ult", ...) of x and y."""
        return self._insert(arith.CmpiOp(x, y, predicate))

    def divsi(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.DivSIOp(x, y))

    def addf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.AddfOp(x, y, CONTRACT))

    def subf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.SubfOp(x, y))

    def mulf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.MulfOp(x, y, CONTRACT))

    def divf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.DivfOp(x, y))

    def negf(self, x: SSAValue) -> SSAValue:
        return self._insert(arith.NegfOp(x))

    def maximumf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.MaximumfOp(x, y))

    def minimumf(self, x: SSAValue, y: SSAValue) -> SSAValue:
        return self._insert(arith.MinimumfOp(x, y))

    def cmpf(self, predicate: str, x: SSAValue, y: SSAValue) -> SSAValue:
        """An i1: `predicate` (MLIR's: "ogt", "oeq", ...) of x and y."""
        return self._insert(arith.CmpfOp(x, y, predicate))

    def select(self, condition: SSAValue, x: SSAValue, y: SSAValue) -> SSAValue:
        """x where `condition` (an i1) holds, else y: scalars, or whole tiles chosen by one scalar condition."""
        return self._insert(arith.SelectOp(condition, x, y))

    def sqrt(self, x: SSAValue) -> SSAValue:
        return self._insert(math.SqrtOp(x))

    def rsqrt(self, x: SSAValue) -> SSAValue:
        return self._insert(math.RsqrtOp(x))

    def silu(self, x: SSAValue) -> SSAValue:
        """x * sigmoid(x), as x / (exp(-x) + 1)."""
        return self.divf(x, self.addf(self.exp(self.negf(x)), self.f32(1.0)))

    def exp(self, x: SSAValue) -> SSAValue:
        return self._insert(math.ExpOp(x))

    def log(self, x: SSAValue) -> SSAValue:
        return self._insert(math.LogOp(x))

    def softplus(self, x: SSAValue) -> SSAValue:
        """torch's softplus: x above the threshold 20, else log1p(e), e = exp(x), as log(u) * e / (u - 1) with
        u = 1 + e (Goldberg's log1p: exact to a few ulp for small e, where log(u) alone loses e's low bits),
        and e itself when u rounds to 1."""
        threshold, one = self.f32(20.0), self.f32(1.0)
        e = self.exp(self.minimumf(x, threshold))
        u = self.addf(e, one)
        log1p = self.mulf(self.log(u), self.divf(e, self.subf(u, one)))
        log1p = self.select(self.cmpf("oeq", u, one), e, log1p)
        return self.select(self.cmpf("ogt", x, threshold), x, log1p)

    # --- buffers --------------------------------------------------------------------------------------------

    def alloc(self, name: str, shape: Sequence[int], element: Attribute, space: str | None = None) -> SSAValue:
        """A scratch buffer of the program (tessera.tile.alloc), its contents undefined until stored; in the
        target's fast memory, or in main memory with space "global"."""
        buffer = self._insert(tile.AllocOp(MemRefType(element, list(shape)), space))
        buffer.name_hint = name
        return buffer

    def size(self, buffer: SSAValue, dimension: int = 0) -> SSAValue:
        """The buffer's size along `dimension` (dimension 0 of a token-major buffer: the call's tokens)."""
        return self._insert(memref.DimOp(buffer, self.index(dimension)))

    # --- tiles ------------------------------------------------------------------------------------------

    def load(self, buffer: SSAValue, indices: Sequence[SSAValue], shape: Sequence[int] | None = None,
             bound: Bound = None, axes: Sequence[int] | None = None, staged: Staging | None = None) -> SSAValue:  # fmt: skip
        """A tile of `shape` from `buffer` at `indices` (shape None: one element), along the buffer dimensions
        `axes` (default: its last ones), masked past `bound`: a value limiting the tile's last axis, or
        {tile axis: bound}; `staged`: brought into the scratchpad as that says."""
        assert isinstance(buffer.type, MemRefType)
        element = buffer.type.element_type
        result: Attribute = element if shape is None else TileType(shape, element)
        bounds, bound_axes = _bounds(bound)
        space, is_async, swizzle = (None, False, None) if staged is None else staged
        return self._insert(tile.LoadOp(buffer, indices, result, bounds, axes, bound_axes, space, is_async, swizzle))

    def store(self, value: SSAValue, buffer: SSAValue, indices: Sequence[SSAValue], bound: Bound = None,
              axes: Sequence[int] | None = None) -> None:  # fmt: skip
        bounds, bound_axes = _bounds(bound)
        self._insert(tile.StoreOp(value, buffer, indices, bounds, axes, bound_axes))

    def broadcast(self, value: SSAValue, axis: int, size: int) -> SSAValue:
        """`value` repeated `size` times along a new axis `axis` (a row statistic against its row)."""
        return self._insert(tile.BroadcastOp(value, axis, size))

    def iota(self, size: int) -> SSAValue:
        """The i32 tile 0, 1, ..., size - 1."""
        return self._insert(tile.IotaOp(size))

    def splat(self, scalar: SSAValue, shape: Sequence[int]) -> SSAValue:
        return self._insert(tile.SplatOp(scalar, shape))

    def convert(self, value: SSAValue, element: Attribute) -> SSAValue:
        if element_of(value.type) == element:
            return value
        return self._insert(tile.ConvertOp(value, element))

    def interleave(self, even: SSAValue, odd: SSAValue) -> SSAValue:
        """The rank-1 tile [2 J] of even's and odd's elements alternately ([J] each): rows 2 i and 2 i + 1 of
        a matrix as row i of its k pairs (mma's rhs_pairs)."""
        return self._insert(tile.InterleaveOp(even, odd))

    def mma(self, a: SSAValue, b: SSAValue, acc: SSAValue, rhs_transposed: bool = False,
            rhs_pairs: bool = False) -> SSAValue:  # fmt: skip
        """acc + a b: tiles [M, K] and [K, N] (f32 or bf16) into an f32 [M, N]; with `rhs_transposed`, b is
        given as its transpose [N, K] (keys by rows: attention's scores); with `rhs_pairs`, as k pairs
        [K/2, 2N] (bf16 weights packed for a matrix unit)."""
        return self._insert(tile.MmaOp(a, b, acc, rhs_transposed, rhs_pairs))

    def reduce(self, combiner: str, value: SSAValue, axis: int = 0) -> SSAValue:
        return self._insert(tile.ReduceOp(combiner, value, axis))

    def scan(self, combiner: str, value: SSAValue, axis: int = 0) -> SSAValue:
        """The inclusive scan of `value` along `axis` (combiner "add": a cumulative sum)."""
        return self._insert(tile.ScanOp(combiner, value, axis))

    def map(self, inputs: Sequence[SSAValue], fn: Callable[..., SSAValue],
            element: Attribute | None = None) -> SSAValue:  # fmt: skip
        """The tile fn(elements...) over `inputs` (tiles of one shape; scalars broadcast): fn gets this builder
        and one element per input, and builds the element ops with the same methods."""
        shape = next(value.type.get_shape() for value in inputs if isinstance(value.type, TileType))
        block = Block(arg_types=[element_of(value.type) for value in inputs])
        outer_block = self.block
        self.block = block  # constants of the region live in the region
        try:
            with self._at_end(block):
                result = fn(self, *block.args)
                self._insert(tile.YieldOp(result))
        finally:
            self.block = outer_block
        result_type = TileType(shape, element or result.type)
        return self._insert(tile.MapOp(inputs, result_type, Region(block)))

    @contextmanager
    def when(self, condition: SSAValue) -> Iterator[None]:
        """scf.if `condition` (an i1) with no results: the body runs where it holds."""
        body = Block()
        with self._at_end(body):
            yield
            self._insert(scf.YieldOp())
        self._builder.insert(scf.IfOp(condition, [], Region(body), Region(Block([scf.YieldOp()]))))

    def blocks(self, extent: int, width: int, body: Callable[[SSAValue, int], None]) -> None:
        """body(first, size) over [0, extent) (known when the kernel is built): a loop over the whole blocks
        of `width` (one copy of the body, however many), then the narrower last one."""
        whole = extent // width * width
        if whole:
            with self.loop(self.index(0), self.index(whole), self.index(width)) as block:
                body(block.iv, width)
        if whole < extent:
            body(self.index(whole), extent - whole)

    @contextmanager
    def loop(self, lo: SSAValue, hi: SSAValue, step: SSAValue,
             carried: Sequence[SSAValue] = (), stages: int | None = None) -> Iterator[Loop]:  # fmt: skip
        """An scf.ForOp lo..hi by step, carrying `carried`; the body yields `loop.yielded` (set by loop.yield_).
        `stages`: software-pipelined (tile.pipeline_stages), its async loads issued that many deep."""
        body = Block(arg_types=[INDEX, *(value.type for value in carried)])
        loop = Loop(body.args[0], list(body.args[1:]))
        with self._at_end(body):
            yield loop
            if len(loop.yielded) != len(carried):
                raise AssertionError(f"the loop carries {len(carried)} values but yields {len(loop.yielded)}")
            self._insert(scf.YieldOp(*loop.yielded))
        op = scf.ForOp(lo, hi, step, list(carried), body)
        if stages is not None:
            op.attributes[tile.STAGES] = IntegerAttr(stages, i64)
        self._builder.insert(op)
        loop.results = list(op.results)

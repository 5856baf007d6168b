"""The GEMM written once: every projection of the model, y[T, N] (op)= x[T, K] @ W[N, K]ᵀ.

matmul(x (f32 | bf16) [T, K], w, [bias f32 [N]], [row_scale f32 [T]], y (f32 | bf16) [T, N])
    for t < T, n < N, in f32 (bf16 operands widened exactly):
        acc = row_scale[t] * sum_k x[t, k] W[n, k] + bias[n]        (the factors the dims name)
        "store": y = acc;  "accumulate": y += acc;  "relu2": y = max(acc, 0)^2
    rounded to nearest even once when y is bf16 (then a single K block: no partial sum is ever rounded).

The weight is read in the layout the runtime packs it into once at load (`weight_layout`): panels of `nr`
output columns, w[p, k, j] = W[p nr + j, k], zero past N (program.json records the packing, nr and dtype).
One program per panel p (GotoBLAS/BLIS blocking, the roles of the operands chosen for a row-major y):

    for each group of mc rows:                   x[group, K block] is reused by every row block of the group
      for each K block of kc:                    the panel's [kc, nr] weight block stays in L2 meanwhile
        for each block of mr rows, then the group's tail as blocks of the powers of two below mr (4, 2, 1
        for mr = 6), one per bit of the tail's length:
          acc [rows, nr] = sum over the block's k of x[rows, k] (a column) times w[p, k, :] (a row): one
          mma per k step, ku steps unrolled; a block of few rows keeps several accumulators (the unrolled
          step u feeding accumulator u mod sets) so that the FMA latency never bounds the weight stream
          y tile = prev + row_scale acc, prev being 0 in the first K block of "store" / "relu2", else y;
          the last K block adds the bias and applies relu2
    y columns past N are masked off (the last panel's zero padding).

No element of y outside the program's panel is read or written, so programs may run on any threads at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, bf16, f32
from xdsl.ir import Attribute, Block, SSAValue

from tessera.dialects.tile import element_of
from tessera.kernels.builder import Dims, KernelBuilder
from tessera.kernels.rows import TOKENS_F32, rows

# Whether a row block is in the first (or last) K block: known when the kernel is built, or an i1 value.
Flag = bool | SSAValue


def _element(name: object) -> Attribute:
    return bf16 if str(name) == "bf16" else f32


def weight_layout(dims: Dims, tiles: Mapping[str, int]) -> MemRefType:
    """The packed weight [ceil(N / nr), K, nr] the kernel reads, in the tiles' weight element type."""
    n, k, nr = int(dims["n"]), int(dims["k"]), tiles["nr"]
    return MemRefType(bf16 if tiles.get("weight_bf16", 0) else f32, [-(-n // nr), k, nr])


def tail_rows(mr: int) -> tuple[int, ...]:
    """The row-block sizes of a group's tail: the powers of two below mr, largest first."""
    return tuple(1 << b for b in reversed(range(mr.bit_length())) if (1 << b) < mr)


def accumulator_sets(rows: int, tiles: Mapping[str, int]) -> int:
    """Accumulators a block of `rows` keeps: enough independent FMA chains (rows nr / lanes vectors each, at
    least min_chains in all; both the target's facts, chosen with the tiles), a power of two dividing ku."""
    per_set, sets = rows * tiles["nr"] // tiles["lanes"], 1
    while sets * per_set < tiles["min_chains"] and sets < tiles["ku"] and tiles["ku"] % (sets * 2) == 0:
        sets *= 2
    return sets


@dataclass(frozen=True)
class GemmOperands:
    """The buffers one GEMM reads and writes: x [rows, K] (f32 | bf16); w packed [..., panels, K, nr] with
    `w_at` the indices of its leading dimensions (an expert's stack; none for a plain weight); y [rows, >= N]
    (f32 | bf16: columns up to the last panel's end are stored unmasked where y is that wide); bias [N] and
    row_scale [rows] where the GEMM has them."""

    x: SSAValue
    w: SSAValue
    y: SSAValue
    w_at: tuple[SSAValue, ...] = ()
    bias: SSAValue | None = None
    row_scale: SSAValue | None = None


class Gemm:
    """The loops of the module docstring for one weight panel, built into a kernel's body with `k`: a matmul
    program's whole body, or one step of a kernel that runs GEMMs on buffers of its own (the MoE experts)."""

    def __init__(self, k: KernelBuilder, n: int, k_size: int, epilogue: str, tiles: Mapping[str, int],
                 operands: GemmOperands, panel: SSAValue) -> None:  # fmt: skip
        self.kb, self.n, self.k_size, self.epilogue, self.tiles = k, n, k_size, epilogue, tiles
        self.nr, self.mr, self.kc, self.mc, self.ku = (tiles[key] for key in ("nr", "mr", "kc", "mc", "ku"))
        assert isinstance(operands.y.type, MemRefType)
        self.y_element = operands.y.type.element_type
        if self.y_element == bf16 and self.kc < self.k_size:
            raise ValueError(f"matmul: a bf16 y needs a single K block (kc >= k = {self.k_size}, got kc {self.kc})")
        self.x, self.w, self.y, self.w_at = operands.x, operands.w, operands.y, list(operands.w_at)
        self.bias, self.row_scale = operands.bias, operands.row_scale
        self.panel = panel
        self.column = k.muli(panel, k.index(self.nr))
        # Columns past N exist only in the last panel: masked where nr does not divide N, unless y has room.
        padded = -(-n // self.nr) * self.nr
        self.column_bound = None if operands.y.type.get_shape()[-1] >= padded else k.index(n)
        self.column_axis = None if self.column_bound is None else 1

    def rows(self, start: SSAValue, end: SSAValue) -> None:
        """y[start:end, the panel's columns]: in groups of mc rows, each group's K blocks, each block's rows."""
        k = self.kb
        with k.loop(start, end, k.index(self.mc)) as group:
            group_end = k.minsi(k.addi(group.iv, k.index(self.mc)), end)
            if self.kc >= self.k_size:
                self.row_blocks(group.iv, group_end, k.index(0), k.index(self.k_size), first=True, last=True)
            else:
                self.k_blocks(group.iv, group_end)

    def k_blocks(self, start: SSAValue, end: SSAValue) -> None:
        """K blocks of kc (the last one shorter where kc does not divide K), one loop: whether a block is the
        first or the last is a value the epilogue reads (one copy of the row blocks, not one per block)."""
        k = self.kb
        size = k.index(self.k_size)
        with k.loop(k.index(0), size, k.index(self.kc)) as block:
            length = k.minsi(k.index(self.kc), k.subi(size, block.iv))
            first = k.cmpi("eq", block.iv, k.index(0))
            last = k.cmpi("eq", k.addi(block.iv, length), size)
            self.row_blocks(start, end, block.iv, length, first, last)

    def row_blocks(self, start: SSAValue, end: SSAValue, k0: SSAValue, length: SSAValue, first: Flag,
                   last: Flag) -> None:  # fmt: skip
        """The rows [start, end) in blocks of mr, then the tail's power-of-two blocks."""
        k, mr = self.kb, self.mr
        count = k.subi(end, start)
        tail = k.subi(count, k.muli(k.divsi(count, k.index(mr)), k.index(mr)))
        full_end = k.subi(end, tail)
        with k.loop(start, full_end, k.index(mr)) as block:
            self.row_block(block.iv, mr, k0, length, first, last)
        for size in tail_rows(mr):
            with k.when(k.cmpi("ne", k.andi(tail, k.index(size)), k.index(0))):
                done = k.andi(tail, k.index(-2 * size))  # the larger blocks before this one: tail's higher bits
                self.row_block(k.addi(full_end, done), size, k0, length, first, last)

    def row_block(self, row: SSAValue, count: int, k0: SSAValue, length: SSAValue, first: Flag, last: Flag) -> None:
        k, ku = self.kb, self.ku
        sets = accumulator_sets(count, self.tiles)
        zero = k.splat(k.f32(0.0), [count, self.nr])
        # Every K block is a multiple of ku long unless K or kc is not: only then a loop of single steps.
        ragged = self.k_size % ku != 0 or self.kc % ku != 0
        end = k.addi(k0, length)
        unrolled_end = k.subi(end, k.subi(length, k.muli(k.divsi(length, k.index(ku)), k.index(ku)))) if ragged else end
        with k.loop(k0, unrolled_end, k.index(ku), [zero] * sets) as steps:
            accs = list(steps.args)
            for u in range(ku):
                accs[u % sets] = self.k_step(row, count, k.addi(steps.iv, k.index(u)), accs[u % sets])
            steps.yield_(*accs)
        acc = self.sum_sets(steps.results)
        if ragged:
            with k.loop(unrolled_end, end, k.index(1), [acc]) as rest:
                rest.yield_(self.k_step(row, count, rest.iv, rest.args[0]))
            acc = rest.results[0]
        self.epilogue_store(row, count, acc, first, last)

    def k_step(self, row: SSAValue, count: int, step: SSAValue, acc: SSAValue) -> SSAValue:
        """acc + x[row : row + count, step] (a column) times w[panel, step, :] (a row)."""
        k = self.kb
        column = k.load(self.x, [row, step], [count, 1])
        at = len(self.w_at)
        weights = k.load(self.w, [*self.w_at, self.panel, step, k.index(0)], [1, self.nr], axes=(at + 1, at + 2))
        if element_of(column.type) != element_of(weights.type):  # an mma multiplies like operands
            column, weights = k.convert(column, f32), k.convert(weights, f32)
        return k.mma(column, weights, acc)

    def sum_sets(self, sets: list[SSAValue]) -> SSAValue:
        """The accumulator sets summed pairwise."""
        while len(sets) > 1:
            half = len(sets) // 2
            sets = [
                self.kb.map([a, b], lambda e, x, y: e.addf(x, y)) for a, b in zip(sets[:half], sets[half:], strict=True)
            ]
        return sets[0]

    def epilogue_store(self, row: SSAValue, count: int, acc: SSAValue, first: Flag, last: Flag) -> None:
        """y tile = prev + row_scale acc (prev: y, or 0 in the first K block of "store" / "relu2"); the last
        K block adds the bias and applies relu2. A flag known only at run time selects per element (y is read
        anyway: its elements exist, and what they hold is not used), so that no branch or mask is needed."""
        k = self.kb
        at = [row, self.column]
        if self.row_scale is not None:
            scale = k.broadcast(k.load(self.row_scale, [row], [count]), 1, self.nr)
            acc = k.map([acc, scale], lambda e, a, s: e.mulf(a, s))
        if first is not True or self.epilogue == "accumulate":
            previous = k.load(self.y, at, [count, self.nr], self.column_bound, bound_axis=self.column_axis)
            if isinstance(first, SSAValue) and self.epilogue != "accumulate":
                acc = k.map([acc, previous, first], lambda e, a, p, starts: e.select(starts, a, e.addf(a, p)))
            else:
                acc = k.map([acc, previous], lambda e, a, p: e.addf(a, p))
        if last is not False and self.bias is not None:
            bias = k.broadcast(k.load(self.bias, [self.column], [self.nr], self.column_bound), 0, count)
            if isinstance(last, SSAValue):
                acc = k.map([acc, bias, last], lambda e, a, b, ends: e.select(ends, e.addf(a, b), a))
            else:
                acc = k.map([acc, bias], lambda e, a, b: e.addf(a, b))
        if last is True and self.epilogue == "relu2":
            acc = k.map([acc], _relu2)
        elif isinstance(last, SSAValue) and self.epilogue == "relu2":
            acc = k.map([acc, last], lambda e, a, ends: e.select(ends, _relu2(e, a), a))
        k.store(k.convert(acc, self.y_element), self.y, at, self.column_bound, bound_axis=self.column_axis)


def _relu2(e: KernelBuilder, a: SSAValue) -> SSAValue:
    positive = e.maximumf(a, e.f32(0.0))
    return e.mulf(positive, positive)


def matmul(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """One program per weight panel, over every row of x."""
    n, k_size = int(dims["n"]), int(dims["k"])
    buffers = {"x": rows(k_size, _element(dims.get("x_dtype", "f32"))), "w": weight_layout(dims, tiles)}
    if int(dims.get("bias", 0)):
        buffers["bias"] = MemRefType(f32, [n])
    if int(dims.get("row_scale", 0)):
        buffers["row_scale"] = TOKENS_F32
    buffers["y"] = MemRefType(_element(dims.get("y_dtype", "f32")), [DYNAMIC_INDEX, n])
    k = KernelBuilder(buffers)
    named = dict(zip(buffers, k.buffers, strict=True))
    operands = GemmOperands(
        named["x"], named["w"], named["y"], bias=named.get("bias"), row_scale=named.get("row_scale")
    )
    gemm = Gemm(k, n, k_size, str(dims["epilogue"]), tiles, operands, k.program_id)
    gemm.rows(k.index(0), k.size(named["x"]))
    return k.finish()


KERNELS = {"matmul": matmul}
# Launch buffers the runtime packs once at load into the layout the kernel reads (program.json records it).
PACKED = {"matmul": {"w": weight_layout}}

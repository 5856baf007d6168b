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

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, bf16, f32
from xdsl.ir import Attribute, Block, SSAValue

from tessera.dialects.tile import TileType, element_of
from tessera.kernels.builder import Bound, Dims, KernelBuilder
from tessera.kernels.gemm_blocks import block_gemm, gemv
from tessera.kernels.rows import TOKENS_F32, rows

# Whether a row block is in the first (or last) K block: known when the kernel is built, or an i1 value.
Flag = bool | SSAValue


def _element(name: object) -> Attribute:
    return bf16 if str(name) == "bf16" else f32


def weight_layout(dims: Dims, tiles: Mapping[str, int]) -> MemRefType:
    """The packed weight [ceil(N / nr), K, nr] the kernel reads, in the tiles' weight element type; with
    `pairs` (bf16 dot products), [ceil(N / nr), K / 2, 2 nr]: w[p, i, 2j + t] = W[p nr + j, 2i + t]; a GPU's
    block GEMM (tiles with block_m) reads W [N, K] itself."""
    n, k = int(dims["n"]), int(dims["k"])
    element = bf16 if tiles.get("weight_bf16", 0) else f32
    if "block_m" in tiles or "columns" in tiles:
        return MemRefType(element, [n, k])
    if tiles.get("pairs", 0):
        return MemRefType(bf16, [-(-n // tiles["nr"]), k // 2, 2 * tiles["nr"]])
    return MemRefType(element, [-(-n // tiles["nr"]), k, tiles["nr"]])


def tail_rows(mr: int) -> tuple[int, ...]:
    """The row-block sizes of a group's tail: the powers of two below mr, largest first."""
    return tuple(1 << b for b in reversed(range(mr.bit_length())) if (1 << b) < mr)


def row_blocks(k: KernelBuilder, start: SSAValue, end: SSAValue, mr: int,
               body: Callable[[SSAValue, int], None]) -> None:  # fmt: skip
    """body(first row, size) over [start, end): blocks of mr rows, then the tail as one block of each power of
    two it contains (5 = 4 + 1), so that few rows never run one at a time; only the tail's blocks where the
    rows are known when the kernel is built."""
    first, last = k.known(start), k.known(end)
    if first is not None and last is not None:
        whole = (last - first) // mr * mr
        if whole:
            with k.loop(start, k.index(first + whole), k.index(mr)) as block:
                body(block.iv, mr)
        row = first + whole
        for size in tail_rows(mr):
            if (last - first - whole) & size:
                body(k.index(row), size)
                row += size
        return
    count = k.subi(end, start)
    tail = k.subi(count, k.muli(k.divsi(count, k.index(mr)), k.index(mr)))
    full_end = k.subi(end, tail)
    with k.loop(start, full_end, k.index(mr)) as block:
        body(block.iv, mr)
    for size in tail_rows(mr):
        with k.when(k.cmpi("ne", k.andi(tail, k.index(size)), k.index(0))):
            done = k.andi(tail, k.index(-2 * size))  # the larger blocks before this one: tail's higher bits
            body(k.addi(full_end, done), size)


def stripe_width(rows: int, tiles: Mapping[str, int]) -> int:
    """The columns of the panel a block of `rows` accumulates at once: the whole panel (nr) where its
    accumulators, rows nr / lanes vector registers, fit the target's `accumulators` budget, else the widest
    power-of-two share of it (nr / 2, nr / 4, ...; at least one vector) that does. AVX-512 (24 of 32 registers)
    takes 6 x 64 whole; AVX2 (12 of 16) 6 x 16, 4 x 16, 2 x 32 and 1 x 64."""
    width = tiles["nr"]
    while rows * width // tiles["lanes"] > tiles["accumulators"] and width > tiles["lanes"] and width % 2 == 0:
        width //= 2
    return width


def accumulator_sets(rows: int, tiles: Mapping[str, int], width: int | None = None) -> int:
    """Accumulators a block of `rows` x `width` (default the panel, nr) keeps: enough independent FMA chains
    (rows width / lanes vectors each, at least min_chains in all; both the target's facts, chosen with the
    tiles), a power of two dividing ku, within the target's `accumulators` budget."""
    per_set, sets = rows * (width or tiles["nr"]) // tiles["lanes"], 1
    while (
        sets * per_set < tiles["min_chains"]
        and 2 * sets * per_set <= tiles["accumulators"]
        and sets < tiles["ku"]
        and tiles["ku"] % (sets * 2) == 0
    ):
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


WIDEN = 16  # bf16 x values widened to f32 at a time (Gemm.widen)


@dataclass(frozen=True)
class Rows:
    """Where a row block's x is read: `buffer` from row `at` (x itself, or the widened copy from row 0), its
    column k at k - `origin`; `first` the block's first row of x (and of y)."""

    buffer: SSAValue
    at: SSAValue
    first: SSAValue
    origin: SSAValue


class Gemm:
    """The loops of the module docstring for one weight panel, built into a kernel's body with `k`: a matmul
    program's whole body, or one step of a kernel that runs GEMMs on buffers of its own (the MoE experts)."""

    def __init__(self, k: KernelBuilder, n: int, k_size: int, epilogue: str, tiles: Mapping[str, int],
                 operands: GemmOperands, panel: SSAValue) -> None:  # fmt: skip
        self.kb, self.n, self.k_size, self.tiles = k, n, k_size, tiles
        self.nr, self.mr, self.kc, self.mc, self.ku = (tiles[key] for key in ("nr", "mr", "kc", "mc", "ku"))
        # With `pairs`, a k step is a pair of k (bf16 x and weights: one dot product per pair): the loops
        # count pairs, so K and the K block are halved.
        self.pairs = bool(tiles.get("pairs", 0))
        if self.pairs:
            if k_size % 2 or self.kc % 2:
                raise ValueError(f"matmul: k pairs need an even K and K block, got K {k_size}, kc {self.kc}")
            self.k_size, self.kc = k_size // 2, self.kc // 2
        self.epilogue = Epilogue(k, epilogue, operands, n, self.nr)
        if self.epilogue.y_element == bf16 and self.kc < self.k_size:
            raise ValueError(f"matmul: a bf16 y needs a single K block (kc >= k = {self.k_size}, got kc {self.kc})")
        self.x, self.w, self.w_at = operands.x, operands.w, list(operands.w_at)
        self.panel = panel
        self.column = k.muli(panel, k.index(self.nr))
        # A bf16 x that a row block reads once per stripe is widened once, into [mr, kc] f32: each k step then
        # broadcasts an f32 from memory (one load) instead of widening a bf16 (a load, a shift, a broadcast).
        self.widened = None
        x_type = self.x.type
        assert isinstance(x_type, MemRefType)
        if x_type.element_type == bf16 and not self.pairs and stripe_width(self.mr, tiles) < self.nr:
            self.widened = k.alloc("xw", [self.mr, -(-min(self.kc, self.k_size) // WIDEN) * WIDEN], f32)

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
        row_blocks(self.kb, start, end, self.mr, lambda row, size: self.row_block(row, size, k0, length, first, last))

    def row_block(self, row: SSAValue, count: int, k0: SSAValue, length: SSAValue, first: Flag, last: Flag) -> None:
        """y[row : row + count, the panel] over one K block: the whole panel at once, or stripe by stripe where
        its accumulators would not fit the registers (stripe_width); stripes wholly past N are skipped."""
        k, width = self.kb, stripe_width(count, self.tiles)
        rows = Rows(self.x, row, row, k.index(0))
        if width == self.nr:
            self.stripe(rows, count, k.index(0), width, k0, length, first, last)
            return
        if self.widened is not None:
            self.widen(row, count, k0, length)
            rows = Rows(self.widened, k.index(0), row, k0)
        with k.loop(k.index(0), k.index(self.nr), k.index(width)) as stripe:
            if self.n % self.nr:  # the last panel is padded past N
                with k.when(k.cmpi("slt", k.addi(self.column, stripe.iv), k.index(self.n))):
                    self.stripe(rows, count, stripe.iv, width, k0, length, first, last)
            else:
                self.stripe(rows, count, stripe.iv, width, k0, length, first, last)

    def widen(self, row: SSAValue, count: int, k0: SSAValue, length: SSAValue) -> None:
        """widened[r, :length] = f32(x[row + r, k0 : k0 + length]) for r < count, WIDEN values at a time (the
        last chunk masked past the block)."""
        assert self.widened is not None
        k, step = self.kb, self.kb.index(WIDEN)
        end = k.addi(k0, length)
        for r in range(count):
            source = k.addi(row, k.index(r))
            with k.loop(k.index(0), length, step) as chunk:
                values = k.load(self.x, [source, k.addi(k0, chunk.iv)], [WIDEN], end)
                k.store(k.convert(values, f32), self.widened, [k.index(r), chunk.iv])

    def stripe(self, rows: Rows, count: int, offset: SSAValue, width: int, k0: SSAValue, length: SSAValue,
               first: Flag, last: Flag) -> None:  # fmt: skip
        """y[rows.first : rows.first + count, the panel's columns offset .. offset + width] over one K block."""
        k, ku = self.kb, self.ku
        sets = accumulator_sets(count, self.tiles, width)
        zero = k.splat(k.f32(0.0), [count, width])
        # Every K block is a multiple of ku long unless K or kc is not: only then a loop of single steps.
        ragged = self.k_size % ku != 0 or self.kc % ku != 0
        end = k.addi(k0, length)
        unrolled_end = k.subi(end, k.subi(length, k.muli(k.divsi(length, k.index(ku)), k.index(ku)))) if ragged else end
        with k.loop(k0, unrolled_end, k.index(ku), [zero] * sets) as steps:
            accs = list(steps.args)
            for u in range(ku):
                step = k.addi(steps.iv, k.index(u))
                accs[u % sets] = self.k_step(rows, count, step, offset, accs[u % sets])
            steps.yield_(*accs)
        acc = self.sum_sets(steps.results)
        if ragged:
            with k.loop(unrolled_end, end, k.index(1), [acc]) as rest:
                rest.yield_(self.k_step(rows, count, rest.iv, offset, rest.args[0]))
            acc = rest.results[0]
        self.epilogue.store(rows.first, k.addi(self.column, offset), acc, first, last)

    def k_step(self, rows: Rows, count: int, step: SSAValue, offset: SSAValue, acc: SSAValue) -> SSAValue:
        """acc + x[rows, step] (a column, read where `rows` says) times w[panel, step, offset:] (a row as wide
        as acc); with pairs, the two columns 2 step, 2 step + 1 times the pair row w[panel, step, 2 offset:]."""
        k = self.kb
        at, width = len(self.w_at), _columns(acc)
        row = rows.at
        if self.pairs:
            columns = k.load(self.x, [row, k.muli(step, k.index(2))], [count, 2])
            at_pair = [*self.w_at, self.panel, step, k.muli(offset, k.index(2))]
            pair_row = k.load(self.w, at_pair, [1, 2 * width], axes=(at + 1, at + 2))
            return k.mma(columns, pair_row, acc, rhs_pairs=True)
        column = k.load(rows.buffer, [row, k.subi(step, rows.origin)], [count, 1])
        weights = k.load(self.w, [*self.w_at, self.panel, step, offset], [1, width], axes=(at + 1, at + 2))
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


def _columns(tile: SSAValue) -> int:
    assert isinstance(tile.type, TileType)
    return tile.type.get_shape()[1]


class Epilogue:
    """y[rows, columns] (op)= row_scale acc + bias, as the module docstring says, for an accumulator tile of any
    [rows, columns] at (row, column): y's columns past N are masked unless y has room up to a multiple of
    `unit` (the widest column block written)."""

    def __init__(self, k: KernelBuilder, kind: str, operands: GemmOperands, n: int, unit: int,
                 row_bound: SSAValue | None = None) -> None:  # fmt: skip
        """`row_bound`: the rows of y, where a tile may reach past them (a GPU's last block of tokens)."""
        assert isinstance(operands.y.type, MemRefType)
        self.kb, self.kind, self.operands = k, kind, operands
        self.y_element = operands.y.type.element_type
        padded = -(-n // unit) * unit
        self.column_bound = None if operands.y.type.get_shape()[-1] >= padded else k.index(n)
        self.row_bound = row_bound
        self.y_bounds: Bound = self.column_bound  # y's last axis, or both
        if row_bound is not None:
            self.y_bounds = {0: row_bound} if self.column_bound is None else {0: row_bound, 1: self.column_bound}

    def plain(self) -> bool:
        """Whether y = acc exactly: "store" into an f32 y, no row scale, no bias."""
        ops = self.operands
        return self.kind == "store" and self.y_element == f32 and ops.bias is None and ops.row_scale is None

    def store(self, row: SSAValue, column: SSAValue, acc: SSAValue, first: Flag, last: Flag) -> None:
        """y tile = prev + row_scale acc (prev: y, or 0 in the first K block of "store" / "relu2"); the last
        K block adds the bias and applies relu2. A flag known only at run time selects per element (y is read
        anyway: its elements exist, and what they hold is not used), so that no branch or mask is needed."""
        k, y = self.kb, self.operands.y
        assert isinstance(acc.type, TileType)
        count, width = acc.type.get_shape()
        at = [row, column]
        if self.operands.row_scale is not None:
            scale = k.broadcast(k.load(self.operands.row_scale, [row], [count], self.row_bound), 1, width)
            acc = k.map([acc, scale], lambda e, a, s: e.mulf(a, s))
        # The bias before y's previous values, so that y is read only where it is written back: a GPU lowering
        # then updates y element by element (a warpgroup thread holds 64 accumulators; 64 of y besides spill).
        if last is not False and self.operands.bias is not None:
            bias = k.broadcast(k.load(self.operands.bias, [column], [width], self.column_bound), 0, count)
            if isinstance(last, SSAValue):
                acc = k.map([acc, bias, last], lambda e, a, b, ends: e.select(ends, e.addf(a, b), a))
            else:
                acc = k.map([acc, bias], lambda e, a, b: e.addf(a, b))
        if first is not True or self.kind == "accumulate":
            previous = k.load(y, at, [count, width], self.y_bounds)
            if isinstance(first, SSAValue) and self.kind != "accumulate":
                acc = k.map([acc, previous, first], lambda e, a, p, starts: e.select(starts, a, e.addf(a, p)))
            else:
                acc = k.map([acc, previous], lambda e, a, p: e.addf(a, p))
        if last is True and self.kind == "relu2":
            acc = k.map([acc], _relu2)
        elif isinstance(last, SSAValue) and self.kind == "relu2":
            acc = k.map([acc, last], lambda e, a, ends: e.select(ends, _relu2(e, a), a))
        k.store(k.convert(acc, self.y_element), y, at, self.y_bounds)


def _relu2(e: KernelBuilder, a: SSAValue) -> SSAValue:
    positive = e.maximumf(a, e.f32(0.0))
    return e.mulf(positive, positive)


def pairs_weight_layout(dims: Dims, tiles: Mapping[str, int]) -> MemRefType:
    """The weight a matrix unit reads (AMX's VNNI tiles): panels of nt columns, k in pairs,
    w[p, i, 2j + t] = W[p nt + j, 2i + t], zero past N and K: [ceil(N / nt), ceil(K / kt) kt / 2, 2 nt] bf16."""
    n, k, nt, kt = int(dims["n"]), int(dims["k"]), tiles["nt"], tiles["kt"]
    return MemRefType(bf16, [-(-n // nt), -(-k // kt) * kt // 2, 2 * nt])


class MatrixUnitGemm:
    """The GEMM as a matrix unit runs it, for a ranged body: the panels [first, end) of nr columns (the vector
    blocking's grid, so that a caller splits the work alike), in weight panels of nt columns. Where x is bf16
    and K is lda (below), the tiles of its whole mt-row pairs are read in place:

        stage the rows past the last whole pair into a scratch [2 mt, lda] (k past K and rows past M zero)
        for each block of `block` weight panels (their K x block nt weights stay in L2 while every row of x
        passes them: the weights stream from memory once, x from L2 or memory once per block):
          for each pair of mt-row blocks of x, then the staged rows' blocks, for each pair of the block's
          weight panels (then the odd last one): acc[i][j] = sum over K in steps of kt of a_i (mt x kt) times
          b_j (k pairs); each acc through a scratch [2 mt, 2 nt] f32, then the epilogue row by row (rows below
          M only) — or, for a plain "store" into an f32 y, straight into y wherever the block lies in it

    Otherwise (an f32 x, or K not lda) each group of `group` rows is first staged as bf16 into a
    scratch [group, lda] (in main memory where the tiles say `staged_heap`) and the weight blocks pass the
    group's rows alike.

    2 x 2 accumulators, two row tiles and two weight tiles are AMX's 8 tile registers (arch.AMX_TILE_REGISTERS).
    lda is K rounded up to kt, plus kt where that row length is an even number of cache lines, so that the mt
    rows of a tile fall in different L1 sets."""

    def __init__(self, k: KernelBuilder, n: int, k_size: int, epilogue: str, tiles: Mapping[str, int],
                 operands: GemmOperands) -> None:  # fmt: skip
        self.kb, self.n, self.k_size = k, n, k_size
        self.nr, self.kt, self.mt, self.nt = (tiles[key] for key in ("nr", "kt", "mt", "nt"))
        self.lda, self.block = tiles["lda"], tiles["block"]
        self.padded_k = -(-k_size // self.kt) * self.kt
        self.x, self.w = operands.x, operands.w
        x_type = self.x.type
        assert isinstance(x_type, MemRefType)
        # In place only where x's rows are already lda long: staging pads a row length of an even number of
        # lines, and reading such rows in place measured 10-15% slower than staging them (K = 1024, 4096).
        self.in_place = x_type.element_type == bf16 and k_size == self.lda
        self.group = 2 * self.mt if self.in_place else tiles["group"]
        self.epilogue = Epilogue(k, epilogue, operands, n, self.nt)
        space = "global" if tiles["staged_heap"] and not self.in_place else None
        self.staged = k.alloc("xs", [self.group, self.lda], bf16, space)
        self.results = k.alloc("cs", [2 * self.mt, 2 * self.nt], f32)

    def panels(self, first: SSAValue, end: SSAValue) -> None:
        """y[:, the columns of the nr-panels first..end]."""
        k = self.kb
        per_panel, weight_panels = k.index(self.nr // self.nt), k.index(-(-self.n // self.nt))
        start = k.muli(first, per_panel)
        stop = k.maxsi(k.minsi(k.muli(end, per_panel), weight_panels), start)
        with k.when(k.cmpi("sgt", stop, start)):  # no panel: stage nothing either
            rows = k.size(self.x)
            if self.in_place:
                pair = k.index(2 * self.mt)
                whole = k.muli(k.divsi(rows, pair), pair)
                self.staged_blocks(whole, k.subi(rows, whole), start, stop, in_place=whole)
            else:
                with k.loop(k.index(0), rows, k.index(self.group)) as group:
                    self.staged_blocks(group.iv, k.minsi(k.index(self.group), k.subi(rows, group.iv)), start, stop)

    def staged_blocks(self, row: SSAValue, length: SSAValue, start: SSAValue, stop: SSAValue,
                      in_place: SSAValue | None = None) -> None:  # fmt: skip
        """Stage x[row:row + length], then each block of weight panels in [start, stop) against the rows of x
        [0, in_place) read in place, then against the staged rows."""
        k, mt = self.kb, self.mt
        blocks = k.divsi(k.addi(length, k.index(mt - 1)), k.index(mt))
        self.stage(row, length, blocks)
        with k.loop(start, stop, k.index(self.block)) as block:
            block_stop = k.minsi(k.addi(block.iv, k.index(self.block)), stop)
            if in_place is not None:
                with k.loop(k.index(0), in_place, k.index(2 * mt)) as pair:
                    self.weight_panels(self.x, pair.iv, pair.iv, k.index(2 * mt), 2, block.iv, block_stop)
            self.row_blocks(row, length, blocks, block.iv, block_stop)

    def stage(self, row: SSAValue, length: SSAValue, blocks: SSAValue) -> None:
        """staged[r] = bf16(x[row + r]) for r < length, zero past K and on the rows up to blocks * mt."""
        k, kt = self.kb, self.kt
        whole = self.k_size // kt * kt
        with k.loop(k.index(0), length, k.index(1)) as r:
            source = k.addi(row, r.iv)
            with k.loop(k.index(0), k.index(whole), k.index(kt)) as chunk:
                values = k.load(self.x, [source, chunk.iv], [kt])
                k.store(k.convert(values, bf16), self.staged, [r.iv, chunk.iv])
            if whole < self.padded_k:  # the last chunk, zero past K
                values = k.load(self.x, [source, k.index(whole)], [kt], k.index(self.k_size))
                k.store(k.convert(values, bf16), self.staged, [r.iv, k.index(whole)])
        zeros = k.convert(k.splat(k.f32(0.0), [kt]), bf16)
        with k.loop(length, k.muli(blocks, k.index(self.mt)), k.index(1)) as r:
            with k.loop(k.index(0), k.index(self.padded_k), k.index(kt)) as chunk:
                k.store(zeros, self.staged, [r.iv, chunk.iv])

    def row_blocks(self, row: SSAValue, length: SSAValue, blocks: SSAValue, first: SSAValue, end: SSAValue) -> None:
        """The staged mt-row blocks (x's rows from `row`, `length` of them), in pairs then the odd last one,
        each against the weight panels [first, end)."""
        k, mt = self.kb, self.mt
        with k.loop(k.index(0), k.divsi(blocks, k.index(2)), k.index(1)) as pair:
            block = k.muli(pair.iv, k.index(2 * mt))
            valid = k.minsi(k.index(2 * mt), k.subi(length, block))
            self.weight_panels(self.staged, block, k.addi(row, block), valid, 2, first, end)
        with k.when(k.cmpi("ne", k.andi(blocks, k.index(1)), k.index(0))):
            last = k.muli(k.subi(blocks, k.index(1)), k.index(mt))
            valid = k.minsi(k.index(mt), k.subi(length, last))
            self.weight_panels(self.staged, last, k.addi(row, last), valid, 1, first, end)

    def weight_panels(self, source: SSAValue, source_row: SSAValue, first_row: SSAValue, valid: SSAValue,
                      row_tiles: int, first: SSAValue, end: SSAValue) -> None:  # fmt: skip
        """One row block against the weight panels [first, end), in pairs then the odd last one."""
        k, two = self.kb, self.kb.index(2)
        count = k.subi(end, first)
        rows = (source, source_row, first_row, valid, row_tiles)
        with k.loop(k.index(0), k.divsi(count, two), k.index(1)) as pair:
            self.tile_block(*rows, k.addi(first, k.muli(pair.iv, two)), 2)
        with k.when(k.cmpi("ne", k.andi(count, k.index(1)), k.index(0))):
            self.tile_block(*rows, k.subi(end, k.index(1)), 1)

    def tile_block(self, source: SSAValue, source_row: SSAValue, first_row: SSAValue, valid: SSAValue,
                   row_tiles: int, panel: SSAValue, panels: int) -> None:  # fmt: skip
        """acc[j] (row_tiles mt x nt) = the rows [source_row, ...) of source (x or the staged rows) times weight
        panel panel + j, over K; then the epilogue of the block's first `valid` rows, x's rows from first_row."""
        k, mt, nt, kt = self.kb, self.mt, self.nt, self.kt
        zero = k.splat(k.f32(0.0), [row_tiles * mt, nt])
        weight_panels = [panel] + [k.addi(panel, k.index(j)) for j in range(1, panels)]
        with k.loop(k.index(0), k.index(self.padded_k), k.index(kt), [zero] * panels) as step:
            a = k.load(source, [source_row, step.iv], [row_tiles * mt, kt])
            pair_row = k.divsi(step.iv, k.index(2))
            accs = [
                k.mma(a, k.load(self.w, [p, pair_row, k.index(0)], [kt // 2, 2 * nt]), acc, rhs_pairs=True)
                for p, acc in zip(weight_panels, step.args, strict=True)
            ]
            step.yield_(*accs)
        column = k.muli(panel, k.index(nt))
        if not self.epilogue.plain():
            self.through_scratch(step.results, first_row, column, valid)
            return
        # y = acc: the accumulators straight into y where the block lies in it, else row by row as above.
        full, right, n = k.index(row_tiles * mt), k.addi(column, k.index(panels * nt)), k.index(self.n)
        with k.when(k.andi(k.cmpi("eq", valid, full), k.cmpi("sle", right, n))):
            for j, acc in enumerate(step.results):
                k.store(acc, self.epilogue.operands.y, [first_row, k.addi(column, k.index(j * nt))])
        with k.when(k.ori(k.cmpi("ne", valid, full), k.cmpi("sgt", right, n))):
            self.through_scratch(step.results, first_row, column, valid)

    def through_scratch(self, accs: list[SSAValue], first_row: SSAValue, column: SSAValue, valid: SSAValue) -> None:
        """Each accumulator into the scratch, then the epilogue of its first `valid` rows, row by row."""
        k, nt = self.kb, self.nt
        for j, acc in enumerate(accs):
            k.store(acc, self.results, [k.index(0), k.index(j * nt)])
        with k.loop(k.index(0), valid, k.index(1)) as r:
            values = k.load(self.results, [r.iv, k.index(0)], [1, len(accs) * nt])
            self.epilogue.store(k.addi(first_row, r.iv), column, values, first=True, last=True)


def matmul(dims: Dims, tiles: Mapping[str, int]) -> Block:
    """One program per weight panel, over every row of x; with tiles for a matrix unit (`kt`: its k depth),
    a ranged body of MatrixUnitGemm; with a GPU's (`block_m`), one program per tile of y
    (kernels/gemm_blocks.py)."""
    n, k_size = int(dims["n"]), int(dims["k"])
    matrix_unit, blocks, one_token = "kt" in tiles, "block_m" in tiles, "columns" in tiles
    weight = pairs_weight_layout(dims, tiles) if matrix_unit else weight_layout(dims, tiles)
    buffers = {"x": rows(k_size, _element(dims.get("x_dtype", "f32"))), "w": weight}
    if int(dims.get("bias", 0)):
        buffers["bias"] = MemRefType(f32, [n])
    if int(dims.get("row_scale", 0)):
        buffers["row_scale"] = TOKENS_F32
    buffers["y"] = MemRefType(_element(dims.get("y_dtype", "f32")), [DYNAMIC_INDEX, n])
    k = KernelBuilder(buffers, ranged=matrix_unit, token_blocks=blocks)
    named = dict(zip(buffers, k.buffers, strict=True))
    operands = GemmOperands(
        named["x"], named["w"], named["y"], bias=named.get("bias"), row_scale=named.get("row_scale")
    )
    epilogue = str(dims["epilogue"])
    if one_token:
        gemv_epilogue = Epilogue(k, epilogue, operands, n, tiles["columns"], row_bound=k.size(named["x"]))
        gemv(k, n, k_size, tiles, named["x"], named["w"], gemv_epilogue)
    elif blocks:
        tokens = k.size(named["x"])
        block_epilogue = Epilogue(k, epilogue, operands, n, tiles["block_n"], row_bound=tokens)
        block_gemm(k, n, k_size, tiles, named["x"], named["w"], block_epilogue)
    elif matrix_unit:
        MatrixUnitGemm(k, n, k_size, epilogue, tiles, operands).panels(*k.program_range)
    else:
        Gemm(k, n, k_size, epilogue, tiles, operands, k.program_id).rows(k.index(0), k.size(named["x"]))
    return k.finish()


KERNELS = {"matmul": matmul}
# Launch buffers the runtime packs once at load into the layout the kernel reads (program.json records it).
PACKED = {"matmul": {"w": weight_layout}}

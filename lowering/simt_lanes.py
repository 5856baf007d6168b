"""Where a tile's elements live in a GPU wave, for convert-tessera-tile-to-simt (lowering/tile_to_simt.py and
lowering/simt_matrix.py).

A tile of C elements (row-major: element e of a [M, N] tile is (e // N, e % N)) is spread over the W lanes of
a wave in slots: lane l's slot j holds element j W + l, so consecutive lanes hold consecutive elements (their
loads and stores coalesce). A lane holds ceil(C / W) of them (a vector of that length, the element itself
where it is one). A tile smaller than the wave with W a multiple of C is replicated: lane l holds element
l mod C. Otherwise, where C is not a multiple of W, the last slot is padded: past C a lane holds a copy of
element C - 1 (every access stays in bounds). Only one lane owns each element: a store or a staging writes
the owned ones (lanes l < C of a replicated tile; the elements below C of a padded slot).

Matrix tiles an mma reads or writes take other layouts (Before chooses them): its accumulator's chain is
Blocked (a lane grid) or the matrix instruction's Fragments (Warpgroups for Hopper's WGMMA, whose per-row
values are WarpgroupRows); an operand loaded from a buffer only to be converted and multiplied is in Runs of
up to 16 bytes of a row, each one vector load. So is a row kernel's rank-1 tile that it only streams (loads,
maps, sums carried through its loop, reductions, stores: choose_row_runs), each run one vector load or store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from xdsl.dialects import arith, gpu, scf, vector
from xdsl.dialects.builtin import AnyFloat, BFloat16Type, IndexType, IntegerAttr, MemRefType
from xdsl.ir import Attribute, Block, BlockArgument, Operation, SSAValue

from tessera.arch import (
    WARPGROUP,
    GpuArch,
    MatrixInstruction,
    WarpgroupFragments,
    WaveFragments,
    mma_rows_padded,
    warpgroup_instruction,
)
from tessera.dialects import tile
from tessera.dialects.schedule import element_bytes
from tessera.dialects.tile import TileType
from tessera.dialects.upstream import FromElementsOp
from tessera.lowering.tile_elements import Emitter, TilePattern

INDEX = IndexType()
Combine = Callable[[SSAValue, SSAValue], Operation]
_FLOAT_COMBINE: dict[str, Combine] = {"add": arith.AddfOp, "max": arith.MaximumfOp, "min": arith.MinimumfOp}
_INTEGER_COMBINE: dict[str, Combine] = {"add": arith.AddiOp, "max": arith.MaxSIOp, "min": arith.MinSIOp}


def function_of(op: Operation) -> gpu.FuncOp:
    parent = op.parent_op()
    while not isinstance(parent, gpu.FuncOp):
        assert parent is not None, f"{op.name} outside a gpu.func"
        parent = parent.parent_op()
    return parent


def lane_of(op: Operation) -> SSAValue:
    """This lane's index in the wave: the gpu.thread_id x that LowerKernel put at the function's entry."""
    for candidate in function_of(op).body.block.ops:
        if isinstance(candidate, gpu.ThreadIdOp):
            return candidate.result
    raise AssertionError("LowerKernel places gpu.thread_id at every gpu.func's entry")


@dataclass(frozen=True)
class Spread:
    """A tile's elements over the lanes of a wave (see the module docstring)."""

    shape: tuple[int, ...]
    lanes: int

    @staticmethod
    def of(type_: Attribute, lanes: int) -> Spread:
        assert isinstance(type_, TileType)
        return Spread(tuple(type_.get_shape()), lanes)

    @property
    def count(self) -> int:
        total = 1
        for size in self.shape:
            total *= size
        return total

    @property
    def slots(self) -> int:
        return -(-self.count // self.lanes)

    @property
    def replicated(self) -> bool:
        return self.count < self.lanes and self.lanes % self.count == 0

    def padded(self, slot: int) -> bool:
        """Whether some lanes hold no element of their own in `slot`."""
        return not self.replicated and (slot + 1) * self.lanes > self.count

    def element(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue:
        """The (index) number of the element that `lane` holds in `slot`."""
        if self.replicated:
            return emit(arith.RemUIOp(lane, emit.constant(self.count, INDEX)))
        number = lane if slot == 0 else emit(arith.AddiOp(lane, emit.constant(slot * self.lanes, INDEX)))
        if self.padded(slot):
            number = emit(arith.MinUIOp(number, emit.constant(self.count - 1, INDEX)))
        return number

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        """Per slot, the position along each axis of the tile of the element `lane` holds (row-major). Where
        the wave covers whole rows (W a multiple of a row's N) or a row whole waves (N a multiple of W), a
        slot's position is the lane's own plus a constant: the lane is split once, not per slot."""
        if len(self.shape) == 2 and not self.replicated and not any(map(self.padded, range(self.slots))):
            cols = self.shape[1]
            if self.lanes % cols == 0 or cols % self.lanes == 0:
                return self._by_rows(emit, lane, cols)
        return [self._positions(emit, self.element(emit, lane, slot)) for slot in range(self.slots)]

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        """The position of the element `lane` holds in slot 0 (what steps() are relative to)."""
        if len(self.shape) == 2 and self.shape[1] % self.lanes == 0 and not self.replicated:
            return [emit.constant(0, INDEX), lane]
        return self._positions(emit, self.element(emit, lane, 0))

    def steps(self) -> list[list[int]] | None:
        """Per slot, its element's position minus slot 0's along each axis, where that is the same constant
        for every lane (an access then computes one address and adds a constant per slot); else None."""
        if self.replicated or any(map(self.padded, range(self.slots))):
            return None
        if len(self.shape) == 1:
            return [[slot * self.lanes] for slot in range(self.slots)]
        if len(self.shape) != 2:
            return None
        cols = self.shape[1]
        if cols % self.lanes == 0:
            per_row = cols // self.lanes
            return [[slot // per_row, (slot % per_row) * self.lanes] for slot in range(self.slots)]
        if self.lanes % cols == 0:
            return [[slot * (self.lanes // cols), 0] for slot in range(self.slots)]
        return None

    def _by_rows(self, emit: Emitter, lane: SSAValue, cols: int) -> list[list[SSAValue]]:
        def plus(value: SSAValue, offset: int) -> SSAValue:
            return value if offset == 0 else emit(arith.AddiOp(value, emit.constant(offset, INDEX)))

        if cols % self.lanes == 0:  # a row spans cols / W slots: the lane is the column within each
            per_row = cols // self.lanes
            return [
                [emit.constant(slot // per_row, INDEX), plus(lane, (slot % per_row) * self.lanes)]
                for slot in range(self.slots)
            ]
        row = emit(arith.DivUIOp(lane, emit.constant(cols, INDEX)))  # W / cols rows per slot
        col = emit(arith.RemUIOp(lane, emit.constant(cols, INDEX)))
        return [[plus(row, slot * (self.lanes // cols)), col] for slot in range(self.slots)]

    def _positions(self, emit: Emitter, element: SSAValue) -> list[SSAValue]:
        positions: list[SSAValue] = []
        for size in reversed(self.shape[1:]):
            positions.append(emit(arith.RemUIOp(element, emit.constant(size, INDEX))))
            element = emit(arith.DivUIOp(element, emit.constant(size, INDEX)))
        positions.append(element)
        return positions[::-1]

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        """Whether `lane` owns its element of `slot` (None: every lane does)."""
        if self.replicated:
            return emit(arith.CmpiOp(lane, emit.constant(self.count, INDEX), "ult"))
        if self.padded(slot):
            return emit(arith.CmpiOp(lane, emit.constant(self.count - slot * self.lanes, INDEX), "ult"))
        return None


@dataclass(frozen=True)
class Blocked:
    """A matrix tile [M, N] over a wave's W lanes as a grid of rows x cols lanes (rows cols = W): lane
    l = cols ty + tx holds the (M / rows) x (N / cols) elements at rows ty + rows i and columns tx + cols j,
    slot i (N / cols) + j. An mma's accumulator lives so (choose_blocked): per step of K a lane reads
    M / rows elements of a and N / cols of b for (M / rows)(N / cols) multiply-adds, where a row-major
    spread would read two per multiply-add; consecutive lanes hold consecutive columns (stores coalesce)."""

    shape: tuple[int, int]
    lanes: int
    grid: tuple[int, int]  # lanes along rows, along columns

    @property
    def count(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def slots(self) -> int:
        return self.count // self.lanes

    @property
    def per_lane(self) -> tuple[int, int]:
        return self.shape[0] // self.grid[0], self.shape[1] // self.grid[1]

    def lane_position(self, emit: Emitter, lane: SSAValue) -> tuple[SSAValue, SSAValue]:
        """(ty, tx): the lane's first row and column."""
        cols = emit.constant(self.grid[1], INDEX)
        return emit(arith.DivUIOp(lane, cols)), emit(arith.RemUIOp(lane, cols))

    def rows(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        """The rows the lane holds, in slot order."""
        first, _ = self.lane_position(emit, lane)
        return [_plus(emit, first, self.grid[0] * i) for i in range(self.per_lane[0])]

    def cols(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        _, first = self.lane_position(emit, lane)
        return [_plus(emit, first, self.grid[1] * j) for j in range(self.per_lane[1])]

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        rows, cols = self.rows(emit, lane), self.cols(emit, lane)
        return [[row, col] for row in rows for col in cols]

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        return list(self.lane_position(emit, lane))

    def steps(self) -> list[list[int]]:
        return [[self.grid[0] * i, self.grid[1] * j] for i in range(self.per_lane[0]) for j in range(self.per_lane[1])]

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        return None  # every lane holds elements of its own


@dataclass(frozen=True)
class Fragments:
    """A matrix tile [M, N] as the accumulators of a wave's matrix instruction (arch.WaveFragments), one per
    instruction-sized block: block (bm, bn) of the M / m x N / n, element i of lane l = group q + c at row
    bm m + acc_per_lane q + i, column bn n + c; slot (bm (N / n) + bn) acc_per_lane + i."""

    shape: tuple[int, int]
    lanes: int
    instruction: MatrixInstruction

    @property
    def fragments(self) -> WaveFragments:
        assert self.instruction.fragments is not None
        return self.instruction.fragments

    @property
    def blocks(self) -> tuple[int, int]:
        return self.shape[0] // self.instruction.m, self.shape[1] // self.instruction.n

    @property
    def slots(self) -> int:
        return self.blocks[0] * self.blocks[1] * self.fragments.acc_per_lane

    def lane_position(self, emit: Emitter, lane: SSAValue) -> tuple[SSAValue, SSAValue]:
        """(q, c): the lane's quad and its column in a block."""
        group = emit.constant(self.fragments.group, INDEX)
        return emit(arith.DivUIOp(lane, group)), emit(arith.RemUIOp(lane, group))

    def steps(self) -> list[list[int]]:
        m, n, per_lane = self.instruction.m, self.instruction.n, self.fragments.acc_per_lane
        rows, cols = self.blocks
        return [[bm * m + i, bn * n] for bm in range(rows) for bn in range(cols) for i in range(per_lane)]

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        return _stepped_places(emit, self.origin(emit, lane), self.steps())

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        quad, column = self.lane_position(emit, lane)
        return [emit(arith.MuliOp(quad, emit.constant(self.fragments.acc_per_lane, INDEX))), column]

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        return None  # every lane holds elements of its own


@dataclass(frozen=True)
class Warpgroups:
    """A matrix tile [M, N] as the accumulators of warpgroup WGMMAs (arch.WarpgroupFragments): warpgroup g
    (threads 128 g ..) holds rows 64 g .. 64 g + 63, in N / n instructions' results of n / 2 registers each;
    slot c (n / 2) + i is register i of the result of columns c n .. c n + n - 1."""

    shape: tuple[int, int]
    instruction: MatrixInstruction

    @property
    def fragments(self) -> WarpgroupFragments:
        assert self.instruction.warpgroup is not None
        return self.instruction.warpgroup

    @property
    def warpgroups(self) -> int:
        return self.shape[0] // self.instruction.m

    @property
    def registers(self) -> int:
        """Registers of one instruction's result per thread."""
        return self.instruction.n // 2

    @property
    def slots(self) -> int:
        return self.shape[1] // self.instruction.n * self.registers

    def steps(self) -> list[list[int]]:
        origin = self.fragments.coordinate(0, 0)
        places = []
        for chunk in range(self.shape[1] // self.instruction.n):
            for register in range(self.registers):
                row, column = self.fragments.coordinate(0, register)
                places.append([row - origin[0], chunk * self.instruction.n + column - origin[1]])
        return places

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        """Thread t = 128 g + 32 w + l: row 64 g + 16 w + l / 4, column 2 (l mod 4)."""
        fragments = self.fragments
        warp = emit(arith.DivUIOp(lane, emit.constant(32, INDEX)))  # 4 g + w
        in_warp = emit(arith.RemUIOp(lane, emit.constant(32, INDEX)))
        row = emit(arith.AddiOp(
            emit(arith.MuliOp(warp, emit.constant(fragments.rows_per_warp, INDEX))),
            emit(arith.DivUIOp(in_warp, emit.constant(fragments.lanes_per_row, INDEX))),
        ))  # fmt: skip
        pair = emit(arith.RemUIOp(in_warp, emit.constant(fragments.lanes_per_row, INDEX)))
        return [row, emit(arith.MuliOp(pair, emit.constant(2, INDEX)))]

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        return _stepped_places(emit, self.origin(emit, lane), self.steps())

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        return None  # every thread of the multiplying warpgroups holds elements of its own


@dataclass(frozen=True)
class WarpgroupRows:
    """A rank-1 tile [M] of one value per row of a Warpgroups tile [M, N] (a row's max or sum, a per-row
    factor), where the rows' own threads hold it: a thread of a Warpgroups tile holds elements of rows r and
    r + 8 (arch.WarpgroupFragments), and of the 4 threads sharing those rows (lanes 4 q .. 4 q + 3 of a warp)
    the first two hold row r, the last two row r + 8 — one slot each, every row held twice. A reduction
    along the rows and a broadcast back then move values within those 4 lanes only (shuffles, no barrier)."""

    shape: tuple[int]
    fragments: WarpgroupFragments

    @property
    def slots(self) -> int:
        return 1

    def steps(self) -> list[list[int]] | None:
        return None

    def row(self, emit: Emitter, lane: SSAValue) -> SSAValue:
        """Thread t = 32 w' + l (w' its warp in the workgroup): row 16 w' + l / 4 + 8 ((l mod 4) / 2)."""
        fragments = self.fragments
        warp = emit(arith.DivUIOp(lane, emit.constant(32, INDEX)))
        in_warp = emit(arith.RemUIOp(lane, emit.constant(32, INDEX)))
        quad_lane = emit(arith.RemUIOp(in_warp, emit.constant(fragments.lanes_per_row, INDEX)))
        return emit(arith.AddiOp(
            emit(arith.AddiOp(
                emit(arith.MuliOp(warp, emit.constant(fragments.rows_per_warp, INDEX))),
                emit(arith.DivUIOp(in_warp, emit.constant(fragments.lanes_per_row, INDEX))),
            )),
            emit(arith.MuliOp(emit(arith.DivUIOp(quad_lane, emit.constant(2, INDEX))), emit.constant(8, INDEX))),
        ))  # fmt: skip

    def holds_first_row(self, emit: Emitter, lane: SSAValue) -> SSAValue:
        """Whether the thread's slot is its Warpgroups rows' first (r), not r + 8."""
        quad_lane = emit(arith.RemUIOp(lane, emit.constant(self.fragments.lanes_per_row, INDEX)))
        return emit(arith.CmpiOp(quad_lane, emit.constant(2, INDEX), "ult"))

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        return [self.row(emit, lane)]

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        return [self.origin(emit, lane)]

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        """The first of the two threads holding a row."""
        odd = emit(arith.RemUIOp(lane, emit.constant(2, INDEX)))
        return emit(arith.CmpiOp(odd, emit.constant(0, INDEX), "eq"))


def choose_warpgroups(mma: tile.MmaOp, arch: GpuArch) -> Warpgroups | None:
    """The accumulator layout of a warpgroup matrix instruction (WGMMA), for an mma whose tile is whole
    instructions and whose operands are either both staged by a copy engine (async loads: the pipelined loop
    the NVVM lowering turns into producer and consumer warpgroups) or both staged by the workgroup's lanes
    (tile.warpgroup_staged: a workgroup of one warpgroup per 64 rows); else None."""
    staged = tile.warpgroup_staged(mma, arch)
    if staged is not None:
        acc = mma.result.type
        assert isinstance(acc, TileType)
        rows, cols = acc.get_shape()
        return Warpgroups((rows, cols), staged)
    instruction = arch.instruction("bf16")
    operands = [operand.owner for operand in (mma.lhs, mma.rhs)]
    if instruction is None or instruction.warpgroup is None:
        return None
    if not all(isinstance(load, tile.LoadOp) and load.is_async is not None for load in operands):
        return None
    acc = mma.result.type
    assert isinstance(acc, TileType)
    rows, cols = acc.get_shape()
    if rows % instruction.m or cols % instruction.n:
        return None
    # One instruction as wide as the block where it can be (N up to 256): each K step reads a's rows once.
    return Warpgroups((rows, cols), replace(instruction, n=cols) if cols <= 256 else instruction)


@dataclass(frozen=True)
class Along:
    """What a lane of `layout` (a matrix tile's) needs of a rank-1 tile broadcast into it along the other axis:
    its positions along `axis`, each once where the layout's steps are constants (`slot_of` maps the matrix
    tile's slots to them)."""

    layout: Layout
    axis: int

    def _distinct(self) -> list[int] | None:
        steps = self.layout.steps()
        return None if steps is None else list(dict.fromkeys(step[self.axis] for step in steps))

    @property
    def slots(self) -> int:
        distinct = self._distinct()
        return self.layout.slots if distinct is None else len(distinct)

    def slot_of(self, slot: int) -> int:
        steps, distinct = self.layout.steps(), self._distinct()
        return slot if steps is None or distinct is None else distinct.index(steps[slot][self.axis])

    def steps(self) -> list[list[int]] | None:
        distinct = self._distinct()
        return None if distinct is None else [[position] for position in distinct]

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        return [self.layout.origin(emit, lane)[self.axis]]

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        distinct = self._distinct()
        if distinct is None:
            return [[place[self.axis]] for place in self.layout.coordinates(emit, lane)]
        at = _shifts(emit, self.origin(emit, lane)[0])
        return [[at(position)] for position in distinct]

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        return None


# The widest global access a lane makes: 16 bytes (global_load_dwordx4, ld.global.v4.f32).
VECTOR_BYTES = 16


@dataclass(frozen=True)
class Runs:
    """A matrix tile [M, N] in runs of `width` consecutive elements of a row: run r (row-major, N / width
    runs a row) in lane r mod W, whose slots j width .. (j + 1) width - 1 hold its run j W + l. An mma operand
    read from a buffer lives so (Before): each run is one vector load. Every lane holds whole runs of its own
    (M N / width a multiple of W), and a row spans whole waves of runs or a wave whole rows. A rank-1 tile [N]
    is one such row (a row kernel's tile: choose_row_runs)."""

    shape: tuple[int, ...]
    lanes: int
    width: int

    @property
    def matrix(self) -> tuple[int, int]:
        """The shape as a matrix: a rank-1 tile is one row."""
        return (self.shape[0], self.shape[1]) if len(self.shape) == 2 else (1, self.shape[0])

    @property
    def slots(self) -> int:
        rows, columns = self.matrix
        return rows * columns // self.lanes

    def run_steps(self) -> list[list[int]]:
        """Per run of a lane, its first element's position minus that of the lane's first run."""
        per_row, runs = self.matrix[1] // self.width, self.slots // self.width
        if self.lanes % per_row == 0:
            steps = [[run * (self.lanes // per_row), 0] for run in range(runs)]
        else:
            waves = per_row // self.lanes  # waves of runs a row
            steps = [[run // waves, (run % waves) * self.lanes * self.width] for run in range(runs)]
        return steps if len(self.shape) == 2 else [[column] for _, column in steps]

    def steps(self) -> list[list[int]]:
        return [[*step[:-1], step[-1] + i] for step in self.run_steps() for i in range(self.width)]

    def coordinates(self, emit: Emitter, lane: SSAValue) -> list[list[SSAValue]]:
        at = [_shifts(emit, position) for position in self.origin(emit, lane)]
        return [[shift(delta) for shift, delta in zip(at, step, strict=True)] for step in self.steps()]

    def origin(self, emit: Emitter, lane: SSAValue) -> list[SSAValue]:
        per_row = self.matrix[1] // self.width
        if self.lanes % per_row == 0:
            row = emit(arith.DivUIOp(lane, emit.constant(per_row, INDEX)))
            run = emit(arith.RemUIOp(lane, emit.constant(per_row, INDEX)))
        else:
            row, run = emit.constant(0, INDEX), lane
        column = emit(arith.MuliOp(run, emit.constant(self.width, INDEX)))
        return [row, column] if len(self.shape) == 2 else [column]

    def owner(self, emit: Emitter, lane: SSAValue, slot: int) -> SSAValue | None:
        return None  # every lane holds elements of its own


def choose_runs(values: list[SSAValue], lanes: int) -> Runs | None:
    """Runs for a class of tile values (one layout: Before's union) that are loads from kernel buffers, and
    converts, maps and broadcasts (a per-row factor: each lane reads its runs' rows) of them, used only by
    one another, as mma operands (staged, whatever their layout) and as stored values (a store writes any
    layout's elements where they belong):
    the widest runs, at most VECTOR_BYTES of the narrowest element loaded, that every load reads as aligned
    vectors — along the buffer's innermost dimension, unmasked along it, from a column and a row length that
    are multiples of the run. None where the class is anything else or no runs fit."""
    loads: list[tile.LoadOp] = []
    for value in values:
        owner = value.owner
        if isinstance(owner, tile.LoadOp) and not isinstance(owner.memref.owner, tile.AllocOp):
            loads.append(owner)
        elif not isinstance(owner, (tile.ConvertOp, tile.MapOp, tile.BroadcastOp)):
            return None
        for use in value.uses:
            user = use.operation
            if not isinstance(user, (tile.ConvertOp, tile.MapOp)) and not (
                (isinstance(user, tile.MmaOp) and use.index < 2) or (isinstance(user, tile.StoreOp) and use.index == 0)
            ):
                return None
    if not loads or not isinstance(loads[0].result.type, TileType) or len(loads[0].result.type.get_shape()) != 2:
        return None
    rows, columns = loads[0].result.type.get_shape()
    narrowest = min(element_bytes(tile.element_of(load.result.type)) for load in loads)
    width = VECTOR_BYTES // narrowest
    while width >= 2:
        per_row = columns // width
        fits = columns % width == 0 and (rows * per_row) % lanes == 0
        if fits and (lanes % per_row == 0 or per_row % lanes == 0) and all(aligned_runs(load, width) for load in loads):
            return Runs((rows, columns), lanes, width)
        width //= 2
    return None


def aligned_runs(load: tile.LoadOp | tile.StoreOp, width: int) -> bool:
    """Whether every run of `width` elements of the access's rows is an aligned vector of its global buffer."""
    buffer = load.memref.type
    assert isinstance(buffer, MemRefType)
    if isinstance(load.memref.owner, tile.AllocOp):
        return False  # a scratch buffer
    last = len(buffer.get_shape()) - 1
    innermost = len(tile.access_axes(load)) - 1  # the tile axis along the buffer's rows, when it is the last
    if tile.access_axes(load)[-1] != last or any(axis == innermost for axis, _ in tile.access_bounds(load)):
        return False
    return buffer.get_shape()[last] % width == 0 and known_multiple(load.indices[last]) % width == 0


def choose_row_runs(values: list[SSAValue], lanes: int) -> Runs | None:
    """Runs for a class of rank-1 tiles that a row kernel streams (kernels/rows.py, gated_rmsnorm,
    kv_append): loads from kernel buffers, splats, converts and maps of them, carried through loops, reduced
    and stored — the widest runs, at most VECTOR_BYTES of the narrowest element accessed, that every load and
    store reads or writes as aligned vectors (unmasked, from a multiple of the run) and that tile whole waves
    of lanes: one vector access a run. None where the class holds anything else, or no runs fit."""
    accesses: list[tile.LoadOp | tile.StoreOp] = []
    for value in values:
        owner = value.owner
        if not isinstance(value.type, TileType) or len(value.type.get_shape()) != 1:
            return None
        if isinstance(owner, tile.LoadOp):
            accesses.append(owner)
        elif not isinstance(owner, (tile.ConvertOp, tile.MapOp, tile.SplatOp, scf.ForOp, Block)):
            return None
        for use in value.uses:
            user = use.operation
            if isinstance(user, tile.StoreOp) and use.index == 0:
                accesses.append(user)
            elif not isinstance(user, (tile.ConvertOp, tile.MapOp, tile.ReduceOp, scf.YieldOp, scf.ForOp)):
                return None
    if not any(isinstance(access, tile.LoadOp) for access in accesses):
        return None
    (count,) = values[0].type.get_shape()  # type: ignore[attr-defined]
    narrowest = min(element_bytes(tile.element_of(values_of(access).type)) for access in accesses)
    width = VECTOR_BYTES // narrowest
    while width >= 2:
        if count % (width * lanes) == 0 and all(aligned_runs(access, width) for access in accesses):
            return Runs((count,), lanes, width)
        width //= 2
    return None


def values_of(access: tile.LoadOp | tile.StoreOp) -> SSAValue:
    """The tile an access reads or writes."""
    return access.result if isinstance(access, tile.LoadOp) else access.value


def known_multiple(value: SSAValue) -> int:
    """A number an index is a multiple of, as far as its definition shows (constants, loop variables, sums
    and products of them); 0 for 0, a multiple of every number."""
    owner = value.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return abs(owner.value.value.data)
    if isinstance(owner, (arith.AddiOp, arith.SubiOp)):
        return math.gcd(known_multiple(owner.lhs), known_multiple(owner.rhs))
    if isinstance(owner, arith.MuliOp):
        return known_multiple(owner.lhs) * known_multiple(owner.rhs)
    if isinstance(value, BlockArgument) and value.index == 0 and isinstance(owner.parent_op(), scf.ForOp):
        loop = owner.parent_op()
        assert isinstance(loop, scf.ForOp)
        return math.gcd(known_multiple(loop.lb), known_multiple(loop.step))
    return 1


Layout = Spread | Blocked | Fragments | Runs | Warpgroups | WarpgroupRows
# What an access walks: a tile's layout, or the positions along one axis of one (what a broadcast reads).
Places = Layout | Along


def choose_fragments(shape: tuple[int, ...], depth: int, element: Attribute, arch: GpuArch) -> Fragments | None:
    """The accumulator layout of the arch's matrix instruction for operands of `element`, where the wave
    issues one alone and the tile ([M, N], depth K) is made of whole instruction tiles; else None."""
    instruction = arch.instruction("bf16" if isinstance(element, BFloat16Type) else "f32")
    if instruction is None or instruction.fragments is None or len(shape) != 2:
        return None
    fragments = instruction.fragments
    if fragments.group * instruction.m // fragments.acc_per_lane != arch.wave_size:
        return None
    if shape[0] % instruction.m or shape[1] % instruction.n or depth % instruction.k:
        return None
    return Fragments((shape[0], shape[1]), arch.wave_size, instruction)


def choose_blocked(shape: tuple[int, ...], lanes: int) -> Blocked | None:
    """The lane grid for an mma accumulator of `shape`: the fewest operand reads per step of K (M / rows +
    N / cols), the wider grid along columns on a tie; None where no grid divides the tile."""
    if len(shape) != 2:
        return None
    best: Blocked | None = None
    rows = 1
    while rows <= lanes:
        cols = lanes // rows
        if shape[0] % rows == 0 and shape[1] % cols == 0:
            candidate = Blocked((shape[0], shape[1]), lanes, (rows, cols))
            reads = sum(candidate.per_lane)
            if best is None or reads < sum(best.per_lane):
                best = candidate
        rows *= 2
    return best


def _plus(emit: Emitter, value: SSAValue, offset: int) -> SSAValue:
    return value if offset == 0 else emit(arith.AddiOp(value, emit.constant(offset, INDEX)))


def _stepped_places(emit: Emitter, origin: list[SSAValue], steps: list[list[int]]) -> list[list[SSAValue]]:
    """Per slot, origin + its step along each axis (each sum made once)."""
    shifted = [_shifts(emit, first) for first in origin]
    return [[at(delta) for at, delta in zip(shifted, step, strict=True)] for step in steps]


def _shifts(emit: Emitter, value: SSAValue) -> Callable[[int], SSAValue]:
    """offset -> value + offset, each sum made once (slots sharing a row share its index, and so its reads)."""
    made: dict[int, SSAValue] = {}

    def shifted(offset: int) -> SSAValue:
        if offset not in made:
            made[offset] = _plus(emit, value, offset)
        return made[offset]

    return shifted


def slot_values(emit: Emitter, value: SSAValue, slots: int, element: Attribute) -> list[SSAValue]:
    """A lane's elements of a tile, one scalar (of type `element`) per slot. The tile may not be lowered yet
    (a loop-carried one keeps its tile type until LowerTileTypes): the extracts then read its lowered value."""
    if slots == 1:
        return [value]
    return [emit(vector.ExtractOp(value, [slot], element)) for slot in range(slots)]


def packed(emit: Emitter, values: list[SSAValue]) -> SSAValue:
    """A lane's elements as its lowered tile value (the scalar itself for one slot)."""
    if len(values) == 1:
        return values[0]
    return emit(FromElementsOp(values))


class Before:
    """What the SIMT patterns read of the kernels as written, before any op is lowered (an operand lowered
    already has lost its shape; a loop-carried one keeps its tile type until LowerTileTypes): each op's
    operands, and where each tile value's elements live — a Spread, except along an mma accumulator's chain
    (the values the accumulator flows through unchanged in shape: loop-carried copies, maps, converts, and the
    loads, splats and broadcasts feeding them), which holds the matrix instruction's Fragments where the arch
    has one for the operands and the tile is made of its tiles, else is Blocked (choose_blocked): no lane
    moves an element from the mma to the store; along an operand's chain of loads, converts and maps
    used only by the mma, which is in Runs where its loads read aligned vectors (choose_runs); and, in a
    kernel of WGMMA accumulators, along the rank-1 tiles reduced from or broadcast into their rows
    (WarpgroupRows: held by the rows' own threads); in any other kernel, along a rank-1 class a row kernel
    streams, in Runs where all its accesses are aligned vectors (choose_row_runs)."""

    def __init__(self, module: Operation, arch: GpuArch) -> None:
        lanes = self.lanes = arch.wave_size
        self._operands = {op: tuple(op.operands) for op in module.walk()}
        parent: dict[SSAValue, SSAValue] = {}

        def find(value: SSAValue) -> SSAValue:
            while parent.get(value, value) is not value:
                value = parent[value]
            return value

        def union(*values: SSAValue) -> None:
            tiles = [find(value) for value in values if isinstance(value.type, TileType)]
            for value in tiles[1:]:
                if value is not tiles[0]:
                    parent[value] = tiles[0]

        accumulators: list[tile.MmaOp] = []
        for op in module.walk():
            if isinstance(op, tile.MapOp):
                union(op.result, *op.inputs)
            elif isinstance(op, tile.ConvertOp):
                union(op.result, op.input)
            elif isinstance(op, tile.MmaOp):
                union(op.result, op.acc)
                accumulators.append(op)
            elif isinstance(op, scf.ForOp):
                yielded = op.body.block.last_op
                assert isinstance(yielded, scf.YieldOp)
                for chain in zip(op.iter_args, op.body.block.args[1:], yielded.arguments, op.results, strict=True):
                    union(*chain)
            elif isinstance(op, scf.IfOp):
                for region in op.regions:
                    if region.blocks:
                        last = region.block.last_op
                        assert isinstance(last, scf.YieldOp)
                        for result, value in zip(op.results, last.arguments, strict=True):
                            union(result, value)
        chosen: dict[SSAValue, Layout] = {}
        for mma in accumulators:
            acc_type, lhs_type = mma.result.type, mma.lhs.type
            assert isinstance(acc_type, TileType) and isinstance(lhs_type, TileType)
            shape, depth = acc_type.get_shape(), lhs_type.get_shape()[1]
            layout = (
                choose_warpgroups(mma, arch)
                or choose_fragments(shape, depth, lhs_type.element_type, arch)
                or choose_blocked(shape, lanes)
            )
            if layout is not None:
                chosen[find(mma.result)] = layout
        warpgroups = {layout.warpgroups for layout in chosen.values() if isinstance(layout, Warpgroups)}
        if warpgroups:  # the tiles live in the multiplying warpgroups' threads (their epilogue's), not a wave's
            assert len(warpgroups) == 1, "one warpgroup accumulator shape per kernel"
            self.lanes = lanes = WARPGROUP * next(iter(warpgroups))
        members: dict[SSAValue, list[SSAValue]] = {}
        for op in module.walk():
            for value in [
                *op.results,
                *(arg for region in op.regions for block in region.blocks for arg in block.args),
            ]:
                if isinstance(value.type, TileType):
                    members.setdefault(find(value), []).append(value)
        if warpgroups:
            chosen |= _warpgroup_operands(accumulators, chosen, find, members, arch, lanes)
            chosen |= _warpgroup_rows(module, chosen, find, members)
        runs: dict[SSAValue, Layout] = {}
        for mma in accumulators:  # the operands, and what is stored into a scratch buffer an mma reads in place
            operands = [mma.lhs, mma.rhs]
            for index in (0, 1):
                alloc = tile.read_in_place(mma, index)
                if alloc is not None:
                    operands += [
                        use.operation.value for use in alloc.result.uses if isinstance(use.operation, tile.StoreOp)
                    ]
            for operand in operands:
                root = find(operand)
                if root not in chosen and root not in runs:
                    operand_layout = choose_runs(members[root], lanes)
                    if operand_layout is not None:
                        runs[root] = operand_layout
        chosen |= runs
        if not warpgroups:  # a row kernel's streamed tiles, one vector access a run
            for root, values in members.items():
                if root not in chosen and (row_runs := choose_row_runs(values, lanes)) is not None:
                    chosen[root] = row_runs
        self._chosen = {value: chosen[find(value)] for value in [*parent, *chosen] if find(value) in chosen}
        # mma operands read from their scratch buffer in place (tile.read_in_place): by (mma, operand index);
        # the buffers whose rows are read down a column (a's, b's given transposed) get padded rows.
        self.in_place: dict[tuple[tile.MmaOp, int], tile.AllocOp] = {}
        self.padded_allocs: set[tile.AllocOp] = set()
        # The operands of lane-staged WGMMAs: each at its offset in the dynamic shared memory (never in place).
        self.warpgroup_offsets, self.warpgroup_bytes = tile.warpgroup_staging(module, arch)
        for mma in accumulators:
            if (mma, 0) in self.warpgroup_offsets:
                continue
            for index, padded in enumerate(mma_rows_padded(mma.rhs_transposed is not None)):
                alloc = tile.read_in_place(mma, index)
                if alloc is not None:
                    self.in_place[mma, index] = alloc
                    if padded:
                        self.padded_allocs.add(alloc)
        self.loads_in_place = {mma.operands[index].owner for mma, index in self.in_place}
        # Rank-1 loads a broadcast reads itself, at the positions its result's lanes hold (tile.read_directly).
        self.read_by_broadcast = {
            op: load for op in module.walk() if isinstance(op, tile.BroadcastOp) and (load := tile.read_directly(op))
        }
        self.buffers: dict[tile.AllocOp, SSAValue] = {}  # each alloc's workgroup buffer, as LowerAlloc makes it

    def operands(self, op: Operation) -> tuple[SSAValue, ...]:
        return self._operands[op]

    def operand_types(self, op: Operation) -> tuple[Attribute, ...]:
        return tuple(operand.type for operand in self._operands[op])

    def layout(self, value: SSAValue) -> Layout:
        """Where the elements of a tile value as written (an op's result before it is replaced, or one of
        `operands(op)`) live."""
        chosen = self._chosen.get(value)
        return chosen if chosen is not None else Spread.of(value.type, self.lanes)

    def operand_layout(self, op: Operation, index: int) -> Layout:
        return self.layout(self._operands[op][index])


def _warpgroup_operands(accumulators: list[tile.MmaOp], chosen: dict[SSAValue, Layout],
                        find: Callable[[SSAValue], SSAValue], members: dict[SSAValue, list[SSAValue]],
                        arch: GpuArch, lanes: int) -> dict[SSAValue, Layout]:  # fmt: skip
    """Warpgroups for the classes of lane-staged WGMMA operands that no accumulator places and that take a
    per-row value (a broadcast along rows into them) or that Runs do not fit (a tile masked along its rows, a
    transposed load): a [64 g, N] tile held as an accumulator of that shape would be — each thread a few rows,
    its elements column pairs at constant steps from one origin (one address per element plus a constant,
    pairs stored together), where a Spread of N not dividing the lanes computes every slot's row and column
    apart. Its broadcasts along rows then become WarpgroupRows (each thread reads its rows' values), as the
    footprint pass counts every tile of a WGMMA's rows (passes/tile_compute_footprint.py)."""
    operands: dict[SSAValue, Layout] = {}
    for mma in accumulators:
        staged = tile.warpgroup_staged(mma, arch)
        if staged is None:
            continue
        for operand in (mma.lhs, mma.rhs):
            root, shape = find(operand), operand.type.get_shape()  # type: ignore[attr-defined]
            if root in chosen or root in operands:
                continue
            if not _broadcasts_rows(members[root]) and choose_runs(members[root], lanes) is not None:
                continue
            instruction = warpgroup_instruction(arch, "bf16", (shape[0], shape[1]), staged.k, lanes)
            if instruction is not None:
                operands[root] = Warpgroups((shape[0], shape[1]), instruction)
    return operands


def _broadcasts_rows(values: list[SSAValue]) -> bool:
    """Whether a class of tile values has a member broadcast along its rows from a rank-1 tile."""
    return any(isinstance(value.owner, tile.BroadcastOp) and int(value.owner.axis.value.data) == 1 for value in values)


def _warpgroup_rows(module: Operation, chosen: dict[SSAValue, Layout], find: Callable[[SSAValue], SSAValue],
                    members: dict[SSAValue, list[SSAValue]]) -> dict[SSAValue, Layout]:  # fmt: skip
    """WarpgroupRows for the classes of rank-1 tiles that are a Warpgroups tile reduced along its rows, or
    broadcast along rows into one (other than a position or a value read from memory: those need no lanes'
    values) — where every member of the class is made by an op that reads its layout (elementwise ones,
    loads, the reduction itself, loop-carried values), not one that assumes a Spread (a scan)."""
    rows: dict[SSAValue, Layout] = {}
    for op in module.walk():
        matrix: SSAValue
        vector_: SSAValue
        if isinstance(op, tile.ReduceOp) and int(op.axis.value.data) == 1:
            matrix, vector_ = op.input, op.result
        elif isinstance(op, tile.BroadcastOp) and int(op.axis.value.data) == 1:
            matrix, vector_ = op.result, op.input
            if isinstance(vector_.owner, tile.IotaOp) or tile.read_directly(op) is not None:
                continue
        else:
            continue
        layout, root = chosen.get(find(matrix)), find(vector_)
        if isinstance(layout, Warpgroups) and all(_reads_its_layout(value, chosen, find) for value in members[root]):
            rows[root] = WarpgroupRows((layout.shape[0],), layout.fragments)
    return rows


def _reads_its_layout(value: SSAValue, chosen: dict[SSAValue, Layout], find: Callable[[SSAValue], SSAValue]) -> bool:
    """Whether a rank-1 tile value's lowering places its elements by the layout its class is given: elementwise
    ops, loads and loop-carried values do, and a reduction along the rows of a Warpgroups tile."""
    owner = value.owner
    if isinstance(owner, tile.ReduceOp):
        return isinstance(chosen.get(find(owner.input)), Warpgroups)
    elementwise = (tile.MapOp, tile.ConvertOp, tile.SplatOp, tile.LoadOp, scf.ForOp, scf.IfOp)
    return isinstance(value, BlockArgument) or isinstance(owner, elementwise)


class SimtPattern(TilePattern):
    """A pattern that reads the kernel as it was before the lowering began (Before)."""

    def __init__(self, lanes: int, before: Before) -> None:
        super().__init__(lanes)
        self.before = before


def combiner(op: tile.ReduceOp | tile.ScanOp) -> Combine:
    """The arith op that combines two elements of a reduction or a scan."""
    floats = isinstance(tile.element_of(op.result.type), AnyFloat)
    return (_FLOAT_COMBINE if floats else _INTEGER_COMBINE)[op.combiner.data]

"""A lockstep SIMT simulator of the GPU functions Tessera's GPU targets compile (convert-tessera-tile-to-simt with its
WGMMA + TMA pattern), in numpy: the numerical evidence for kernels that no GPU here can run. It reads MLIR 22's
own IR objects (the Python bindings' operations, types and attributes, as MLIR parsed and verified the module the
target compiles), never its own reading of the text. Test-only; nothing in the package imports it.

    sim = Simulator.of(kernel, wave_size=32)  # a lowered GpuKernel; or Simulator(KernelModule(text), name, names=...)
    report = sim.run((blocks_x, blocks_y), {"x": x, "w": w, "y": y}, {"tokens": 37, "position": 0})

Buffers are numpy arrays, one per pointer parameter by name (the kernel ABI's names, or arg0, arg1...), in their
storage type (f32 float32, bf16 bits uint16, i64 int64, i32 int32); the kernel reads and writes them in place.
The Report counts barriers, MFMAs and reads of LDS elements never written (harmless where the value is
discarded, as for padding columns that only feed discarded outputs; the NaN they read shows up in the outputs
otherwise).

What it models (the documented semantics of the gpu / scf / arith / math / vector / memref / llvm ops and of
the CDNA instructions the emitters use — a model of the ISA as documented, not of any chip):

- Execution: every thread of every workgroup of a batch (workgroups are independent, so several run side
  by side) is one lane of numpy arrays; a value is an array over lanes ([lanes] or [lanes, n] for a
  vector). All lanes step through the ops in lockstep under an active mask: scf.if runs each branch under
  its lanes, scf.for / scf.while keep iterating while any lane is active, with per-lane bounds and
  per-lane carried values. Waves are 64 consecutive threads of a workgroup (`wave_size`: 32 for the NVVM
  SIMT kernels, whose warps the same model covers).
- Global memory (`llvm.getelementptr` / `llvm.load` / `llvm.store`, scalars and vectors, i32 element
  offsets): each active lane's access must lie inside its buffer and the element type must be the buffer's;
  a declared alignment must hold (buffers start aligned). A store whose lanes write different values to one
  element is a race, as is an element written by two workgroups of one launch, or read by one workgroup
  after another wrote it (workgroups are unordered).
- LDS (the `workgroup(...)` memrefs; memref.load / store, vector.load / store, any rank, row padding
  included): one array per workgroup, filled with NaN (f32, and NaN bits in i16 / i32 / i64) at launch,
  since LDS starts as anything; every index must be inside its dimension. Races between waves are
  checked per barrier interval (the accesses between two `gpu.barrier`s of the workgroup): a read of an
  element another wave wrote, a write of one another wave read, or a write of a different value over
  another wave's write, in the same interval, is a missing barrier. Lanes of one wave may communicate
  through LDS without a barrier (a wave executes in order, as the ISA guarantees).
- `gpu.barrier`: every thread of the workgroup must reach it (a barrier under divergent control flow
  fails), and it starts a new interval.
- `gpu.shuffle` xor / up / down / idx within `width` lanes: reading an inactive lane fails; out-of-range
  sources give NaN (floats) or 0xDEADBEEF bits, with `valid` false. `rocdl.readfirstlane`, `rocdl.ballot`
  (active lanes only), `rocdl.mbcnt.lo/hi`.
- MFMA, per wave of 64 lanes, the whole wave active (a wave with no active lane skips it), cbsz = abid =
  blgp = 0, layouts as lowering/rocdl/mfma.py: lane l = 16 q + c holds A[c][kpl q + i], B[kpl q + i][c]
  and D[4 q + i][c]. `rocdl.mfma.f32.16x16x16bf16.1k` (kpl 4, bf16 bits in i16) and
  `rocdl.mfma.f32.16x16x4f32` (kpl 1). The products (exact) and the accumulator are summed in float64 and
  rounded once to f32: the hardware's internal order and rounding may differ within f32 rounding error.
- Hopper (sm_90a): the dynamic shared memory (`@tessera_dynamic_smem`, bytes, 0xFF until written: bf16 NaN),
  addressed by byte offsets (shared::cta and shared::cluster alike; llvm.ptrtoint gives SHARED_WINDOW_BASE +
  offset); mbarriers (init, arrive, arrive.expect_tx, try_wait.parity: a phase completes when its arrivals and
  transaction bytes are done; a wait returns once the phase of the given parity has completed); bulk tensor
  copies of a TensorMap's box (row-major bf16, 128-byte swizzle: 16-byte chunk j of row r at j ^ (r mod 8),
  elements past the tensor zero, the whole box's bytes completing on the mbarrier); WGMMA m64nNk16 bf16 -> f32
  with A and B read through 128-byte-swizzle descriptors (start, stride and leading byte offsets; A K-major, B
  K-major or MN-major) and D in the registers of
  a warpgroup as the PTX ISA lays them out, summed in float64 and rounded once. Copies and WGMMAs complete when
  issued; what models the asynchrony is the waiting: an scf.if whose branches both have lanes runs them side
  by side, each until its lanes wait on an mbarrier (a producer warp and its consumers take turns there), and
  lanes waiting while nothing else can run is a deadlock. A WGMMA's operand bytes stay held by its group
  (wgmma.commit_group closes one; wait_group N retires all but the N most recent): a store into held bytes is
  refused, and so is a bulk copy into bytes that were still held when the mbarrier phase its issuing lane last
  waited for was released — a release before its wait_group, whatever order the lanes happen to run in here.
  setmaxnreg is checked for its rules only (a multiple of 8 in [24, 256], whole warps).
- arith (integers wrap at their width; unsigned ops and predicates read the bits unsigned; division by
  zero and over-wide shifts fail), math (exp, log, sqrt, rsqrt and ctpop: numpy's float32 functions, which
  are correctly rounded or nearly so, where the AMDGPU instruction sequences are within a few ulp), f32 and
  f64 arithmetic in IEEE round-to-nearest-even, NaN propagating through maximumf / minimumf.

What it does not model: timing and anything that depends on it. Lockstep execution cannot itself exhibit a
race: a missing barrier shows up only through the interval checks above, and only for LDS and for global
memory across workgroups (global accesses of different threads of one workgroup are not ordered-checked).
No caches, no memory consistency model beyond that, no denormal flushing, no register or LDS limits (the
lowering and the AMDGCN build check those), no exceptions, no scalar/vector register distinction (a value
that should be wave-uniform is not checked to be). An op the lowerings do not emit fails to load, naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tessera import toolchain
from tessera.lowering.gpu.kernel import GpuKernel

Array = NDArray[Any]
Values = list[Array]
Env = dict[int, Any]  # values by slot: each SSA value of the function is numbered once, when it is compiled
Op = Any  # an operation of MLIR's Python bindings (mlir.ir.Operation)
Run = Generator[None, None, "Values | None"]
Step = Callable[[Env, Array], "Values | Run | None"]

WAVE = 64
_MAX_TRIPS = 1_000_000  # a loop running longer than this is a bug in the kernel (or its bounds)
_DTYPES: dict[str, type[np.generic]] = {
    "f32": np.float32,
    "f64": np.float64,
    "i1": np.bool_,
    "i16": np.uint16,
    "i32": np.int32,
    "i64": np.int64,
    "index": np.int64,
}
_BITS = {"i1": 1, "i16": 16, "i32": 32, "i64": 64, "index": 64}
_UNSIGNED: dict[str, type[np.generic]] = {"i16": np.uint16, "i32": np.uint32, "i64": np.uint64, "index": np.uint64}
_SIGNED: dict[str, type[np.generic]] = {"i16": np.int16, "i32": np.int32, "i64": np.int64, "index": np.int64}
_NAN_BITS = {"f32": 0x7FC0DEAD, "f64": 0x7FF8DEADDEADDEAD, "i16": 0x7FC1, "i32": 0x7FC0DEAD, "i64": 0x7FC0DEAD7FC0DEAD}
_UNDEFINED_INT = 0xDEADBEEF
_MFMA = {  # name -> (operand element, k per lane)
    "rocdl.mfma.f32.16x16x16bf16.1k": ("i16", 4),
    "rocdl.mfma.f32.16x16x4f32": ("f32", 1),
}
_GLOBAL, _SHARED, _SHARED_CLUSTER = 1, 3, 7  # LLVM address spaces (NVPTX / AMDGPU numbering of global and shared)
_CMPI = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")  # an integer compare's predicate values
_CMPF = ("false", "oeq", "ogt", "oge", "olt", "ole", "one", "ord", "ueq", "ugt", "uge", "ult", "ule", "une", "uno",
         "true")  # fmt: skip
# Where the dynamic shared memory starts in the shared window (1 KiB is reserved below it on sm_90): the address
# llvm.ptrtoint gives and WGMMA descriptors encode.
SHARED_WINDOW_BASE = 0x400


class SimulationError(AssertionError):
    """A kernel broke the model: an out-of-bounds or racy access, a divergent barrier, an unknown op..."""


class _Located(SimulationError):
    """A SimulationError that already names the op and line it happened at."""


@dataclass(frozen=True)
class ValueType:
    element: str  # f32 f64 i1 i16 i32 i64 index
    count: int | None = None  # vector length; None for a scalar

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(_DTYPES[self.element])

    def shape(self, lanes: int) -> tuple[int, ...]:
        return (lanes,) if self.count is None else (lanes, self.count)


def _ir() -> Any:
    return toolchain.mlir().ir


def _llvm() -> Any:
    return importlib.import_module("mlir.dialects.llvm")


def _element(type_: Any) -> str:
    ir = _ir()
    if isinstance(type_, ir.F32Type):
        return "f32"
    if isinstance(type_, ir.F64Type):
        return "f64"
    if isinstance(type_, ir.IndexType):
        return "index"
    if isinstance(type_, ir.IntegerType) and f"i{type_.width}" in _DTYPES:
        return f"i{type_.width}"
    raise SimulationError(f"type {type_} is not modelled")


def value_type(type_: Any) -> ValueType:
    """The model of an MLIR type: a scalar, a vector, or an LLVM struct of one element type (a WGMMA
    accumulator), held as a vector."""
    ir, llvm = _ir(), _llvm()
    if isinstance(type_, ir.VectorType):  # (the bindings give a value's type as its own class)
        if type_.rank != 1:
            raise SimulationError(f"type {type_} is not modelled (vectors are rank 1)")
        return ValueType(_element(type_.element_type), type_.shape[0])
    if isinstance(type_, llvm.StructType):
        members = {_element(member) for member in type_.body}
        if len(members) != 1:
            raise SimulationError(f"type {type_} is not modelled (a struct of several element types)")
        return ValueType(members.pop(), len(type_.body))
    return ValueType(_element(type_))


def _address_space(type_: Any) -> int | None:
    """The address space of an LLVM pointer type; None for any other type."""
    llvm = _llvm()
    return int(type_.address_space) if isinstance(type_, llvm.PointerType) else None


def _keyword(attr: Any) -> str:
    """The keyword(s) of a dialect enum attribute (`#gpu<dim x>` -> "x", `#nvvm.wgmma_scale_out<one>` -> "one"):
    the bindings give such attributes no typed accessor, so this is the one place an attribute's spelling is read."""
    spelled = str(attr)
    inner = spelled[spelled.index("<") + 1 : spelled.rindex(">")]
    return inner.split(" ", 1)[1] if inner.startswith(("dim ", "shuffle_mode ")) else inner


class KernelModule:
    """A module of GPU functions (what a GPU target writes, OUT/<target>/kernels.mlir) as MLIR 22 parsed and
    verified it: its functions by name. The bindings' operations live only as long as their module, which this
    holds (and every Simulator of it holds this)."""

    def __init__(self, text: str) -> None:
        ir = _ir()
        with ir.Context():
            try:
                self.module = ir.Module.parse(text)
            except Exception as exc:  # MLIR's diagnostics: the text is not a valid module
                raise SimulationError(f"MLIR cannot read the kernels: {exc}") from None
        self.functions: dict[str, Op] = {}

        gpu = importlib.import_module("mlir.dialects.gpu")

        def collect(op: Op) -> Any:
            if isinstance(op.opview, gpu.GPUFuncOp):
                self.functions[ir.StringAttr(op.attributes["sym_name"]).value] = op
            return ir.WalkResult.ADVANCE

        self.module.operation.walk(collect)


@dataclass(frozen=True)
class Pointer:
    """A global pointer per lane: element offsets into a named buffer (the element type from its GEP)."""

    buffer: str
    element: str | None
    offset: Array


@dataclass(frozen=True)
class SharedPointer:
    """A pointer into the workgroup's dynamic shared memory per lane: byte offsets (the shared::cta and
    shared::cluster windows of one CTA address the same bytes)."""

    offset: Array


@dataclass(frozen=True)
class TensorMap:
    """A CUtensorMap as the host encodes it (cuTensorMapEncodeTiled): a row-major 2-D tensor of bf16 bits, its
    box [box_rows, box_cols], a 128-byte swizzle, out-of-bounds elements filled with zeros."""

    array: Array  # [rows, cols] uint16
    box_rows: int
    box_cols: int


_NO_BYTES = np.zeros(0, np.int64)  # no shared bytes (byte offsets)


@dataclass
class _Mbarrier:
    """An mbarrier (PTX ISA): the arrivals pending and transaction bytes outstanding of its current phase."""

    count: int
    pending: int
    tx: int = 0
    phase: int = 0
    # The shared bytes that WGMMA groups of the arriving warpgroups still read when they arrived, in the current
    # phase and in the last completed one: a thread whose wait returns on that phase may not store into them
    # (it is ordered after the arrivals, not after those WGMMAs).
    released: np.ndarray = field(default_factory=lambda: _NO_BYTES)
    last_released: np.ndarray = field(default_factory=lambda: _NO_BYTES)

    def complete(self) -> None:
        if self.pending < 0:
            raise SimulationError("more arrivals on an mbarrier than its count")
        if self.pending == 0 and self.tx == 0:
            self.phase, self.pending = self.phase + 1, self.count
            self.last_released, self.released = self.released, _NO_BYTES


@dataclass(frozen=True)
class _LdsType:
    shape: tuple[int, ...]
    element: str
    label: str  # "workgroup<i>": the function's i-th workgroup attribution (errors and the Report name it so)


@dataclass
class _Lds:
    """One LDS memref for the workgroups of a batch: data [workgroups, *shape] and the race bookkeeping
    (the interval and wave of each element's last write, the interval of its reads and the waves that read)."""

    data: Array
    write_interval: Array
    write_wave: Array
    read_interval: Array
    read_waves: Array


@dataclass
class Report:
    """What a run saw, beyond the buffers it wrote."""

    workgroups: int = 0
    barriers: int = 0  # barrier instances over all workgroups
    mfma: int = 0  # wave-level MFMA instructions executed
    # Multiply-adds done by matrix instructions (WGMMA, MFMA) and by lanes (contractible f32 products: the
    # SIMT mma's), over all workgroups: the share of a kernel's products on the tensor cores.
    matrix_macs: int = 0
    lane_macs: int = 0
    uninitialized_lds_reads: dict[str, int] = field(default_factory=dict)  # element reads before any write


def _nothing() -> Run:
    """A region no lane runs."""
    return None
    yield  # a generator function


def _ints(value: Array) -> Array:
    return value.astype(np.int64, copy=False)


def _where(cond: Array, a: Array, b: Array) -> Array:
    if a.ndim > cond.ndim:
        cond = cond.reshape(cond.shape + (1,) * (a.ndim - cond.ndim))
    return np.where(cond, a, b).astype(a.dtype, copy=False)


def _bits(values: Array) -> Array:
    """The raw bits of values (so that NaNs compare equal to themselves and -0.0 differs from 0.0)."""
    size = values.dtype.itemsize
    kind = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[size]
    return np.ascontiguousarray(values).view(kind)


def _undefined(type_: ValueType, lanes: int) -> Array:
    """A value nothing defined: NaN for floats, recognisable bits for integers."""
    shape = type_.shape(lanes)
    if type_.element in ("f32", "f64"):
        return np.full(shape, np.nan, type_.dtype)
    if type_.element == "i1":
        return np.zeros(shape, np.bool_)
    return np.full(shape, _UNDEFINED_INT & ((1 << _BITS[type_.element]) - 1), np.uint64).astype(type_.dtype)


def _nan_fill(shape: tuple[int, ...], element: str) -> Array:
    dtype = np.dtype(_DTYPES[element])
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[dtype.itemsize]
    return np.full(shape, _NAN_BITS[element], unsigned).view(dtype)


def _constant(attr: Any, type_: ValueType) -> Any:
    """The scalar a constant op's value attribute holds (a vector constant is a splat), in the model's dtype."""
    ir = _ir()
    if isinstance(attr, ir.DenseElementsAttr):  # (the bindings give an op's attribute as its own class)
        if not attr.is_splat:
            raise SimulationError("a vector constant that is not a splat is not modelled")
        attr = attr.get_splat_value()
    if isinstance(attr, ir.FloatAttr):  # a double holds every f32 exactly
        return type_.dtype.type(attr.value)
    if isinstance(attr, ir.BoolAttr):
        return np.bool_(attr.value)
    value = ir.IntegerAttr(attr).value
    if type_.element == "i1":
        return np.bool_(value != 0)
    return (
        np.array(value & ((1 << _BITS[type_.element]) - 1), np.uint64)
        .astype(_UNSIGNED[type_.element])
        .view(type_.dtype)
    )


# --- the simulator -----------------------------------------------------------------------------------------------


class Simulator:
    """One GPU function of a KernelModule, compiled to numpy closures once; `run` launches it on a grid. `names`
    names its parameters (default arg0, arg1, ...): MLIR does not keep the names of the values it parses."""

    def __init__(
        self, module: KernelModule, name: str, wave_size: int = WAVE, names: Sequence[str] | None = None
    ) -> None:
        ir = _ir()
        self.module = module  # (keeps the IR, and so every op the closures' error messages name, alive)
        function = module.functions[name].operation
        self.function = function
        self.wave_size = wave_size  # 64 (CDNA) or a warp of 32 (the NVVM kernels)
        self.name = ir.StringAttr(function.attributes["sym_name"]).value
        if "known_block_size" not in function.attributes:
            raise SimulationError(f"@{self.name}: no known_block_size (the workgroup's threads)")
        threads, *rest = ir.DenseI32ArrayAttr(function.attributes["known_block_size"])
        if list(rest) != [1, 1]:
            raise SimulationError(
                f"@{self.name}: workgroups are one-dimensional ([threads, 1, 1]), not {threads, *rest}"
            )
        self.threads = int(threads)
        if self.threads % self.wave_size:
            raise SimulationError(f"@{self.name}: {self.threads} threads are not whole waves of {self.wave_size}")
        self._slots: dict[Any, int] = {}
        block = function.regions[0].blocks[0]
        inputs = len(ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value).inputs)
        names = list(names) if names is not None else [f"arg{i}" for i in range(inputs)]
        if len(names) != inputs:
            raise SimulationError(f"@{self.name}: {len(names)} names for {inputs} parameters")
        # (name, slot, kind): a global buffer's pointer, a tensor map's (generic) pointer, or a scalar's type.
        self.params: list[tuple[str, Any]] = []
        self._param_slots: list[int] = []
        for name, arg in zip(names, list(block.arguments)[:inputs], strict=True):
            space = _address_space(arg.type)
            kind = {_GLOBAL: "pointer", 0: "tensor_map"}.get(space) if space is not None else value_type(arg.type)
            if kind is None:
                raise SimulationError(f"@{self.name}: parameter {name} in address space {space} is not modelled")
            self.params.append((name, kind))
            self._param_slots.append(self._slot(arg))
        self.lds_types: dict[int, _LdsType] = {}  # the workgroup attributions (LDS / static shared memory) by slot
        for arg in list(block.arguments)[inputs:]:
            memref = ir.MemRefType(arg.type)
            if memref.memory_space is None or _keyword(memref.memory_space) != "workgroup":
                raise SimulationError(f"@{self.name}: an attribution in {memref.memory_space}, not workgroup memory")
            label = f"workgroup{len(self.lds_types)}"
            self.lds_types[self._slot(arg)] = _LdsType(tuple(memref.shape), _element(memref.element_type), label)
        self.elements: dict[str, str] = {}  # pointer parameter -> the element type its accesses address
        self.body = self._compile_block(block)
        self.progress = 0  # ops executed: a deadlock is lanes waiting while it stands still
        self.shared_bytes = 0
        self._reset(1)

    @classmethod
    def of(cls, kernel: GpuKernel, wave_size: int = WAVE) -> Simulator:
        """A lowered kernel (its GPU module), its parameters named as the kernel ABI names them."""
        return cls(KernelModule(kernel.text), kernel.name, wave_size, kernel.params)

    # --- launch -----------------------------------------------------------------------------------------------

    def run(
        self,
        grid: tuple[int, int],
        buffers: Mapping[str, Array],
        scalars: Mapping[str, int],
        max_lanes: int = 1 << 14,
        tensor_maps: Mapping[str, TensorMap] | None = None,
        shared_bytes: int = 0,
    ) -> Report:
        """Run every workgroup of grid (x, y) — batches of workgroups side by side — on `buffers` in place;
        `tensor_maps` for the CUtensorMap parameters, `shared_bytes` of dynamic shared memory."""
        pointers = [name for name, kind in self.params if kind == "pointer"]
        if set(pointers) != set(buffers):
            raise SimulationError(f"@{self.name}: buffers {sorted(buffers)} != pointer arguments {sorted(pointers)}")
        described = [name for name, kind in self.params if kind == "tensor_map"]
        if set(described) != set(tensor_maps or {}):
            raise SimulationError(f"@{self.name}: tensor maps {sorted(tensor_maps or {})} != {sorted(described)}")
        self.shared_bytes = shared_bytes
        for name in pointers:
            array = buffers[name]
            if not array.flags.c_contiguous:
                raise SimulationError(f"buffer '{name}' is not contiguous")
        self.buffers = {name: buffers[name].reshape(-1) for name in pointers}
        self.writers = {name: np.full(self.buffers[name].size, -1, np.int32) for name in pointers}
        self.report = Report(uninitialized_lds_reads={lds.label: 0 for lds in self.lds_types.values()})
        blocks_x, blocks_y = grid
        total = blocks_x * blocks_y
        per_batch = max(1, max_lanes // self.threads)
        with np.errstate(all="ignore"):
            for first in range(0, total, per_batch):
                count = min(per_batch, total - first)
                self._reset(count, first, blocks_x)
                env: Env = {}
                for (name, kind), slot in zip(self.params, self._param_slots, strict=True):
                    if kind == "pointer":
                        env[slot] = Pointer(name, None, np.zeros(self.lanes, np.int64))
                    elif kind == "tensor_map":
                        env[slot] = tensor_maps[name]  # type: ignore[index]
                    else:
                        if name not in scalars:
                            raise SimulationError(f"@{self.name}: no value for the parameter {name}")
                        env[slot] = np.full(self.lanes, scalars[name], kind.dtype)
                env.update(self.lds)
                self._drive(self._execute(self.body, env, np.ones(self.lanes, np.bool_)))
        self.report.workgroups = total
        return self.report

    def _reset(self, workgroups: int, first: int = 0, blocks_x: int = 1) -> None:
        self.workgroups = workgroups
        self.lanes = workgroups * self.threads
        lane = np.arange(self.lanes, dtype=np.int64)
        self.group = lane // self.threads  # the workgroup within the batch
        self.global_group = (self.group + first).astype(np.int32)
        self.tid = lane % self.threads
        self.block_x = (self.group + first) % blocks_x
        self.block_y = (self.group + first) // blocks_x
        self.wave = self.tid // self.wave_size  # within the workgroup
        self.lane_in_wave = lane % self.wave_size
        self.interval = np.zeros(workgroups, np.int64)
        # Dynamic shared memory, as bytes: 0xFF until written (a bf16 NaN wherever an operand is read unwritten).
        self.shared = np.full((workgroups, self.shared_bytes), 0xFF, np.uint8)
        # Per byte, the thread that stored it through the generic proxy (llvm.store) and has not fenced since
        # (-1: none), and the barrier interval of that store: WGMMA reads through the async proxy.
        self.unfenced = np.full((workgroups, self.shared_bytes), -1, np.int64)
        self.stored_interval = np.full((workgroups, self.shared_bytes), -1, np.int64)
        self.mbarriers: dict[tuple[int, int], _Mbarrier] = {}
        # Per warpgroup (its workgroup-global number), the shared bytes its WGMMAs read, by group: committed
        # groups oldest first, then the open one. A group stays pending until a wait_group retires it, and no
        # store (a lane's or a bulk copy's) may land on a byte a pending group reads.
        self.wgmma_groups: dict[int, list[Array]] = {}
        self.held = np.zeros((workgroups, self.shared_bytes), np.int32)  # per byte, the pending groups reading it
        # Per lane, the bytes still read by WGMMAs when the mbarrier phase it last waited for was released
        # (_Mbarrier.released): its copies may not land on them. Bytes not among them were read by groups
        # retired before that release, which the wait orders the lane after.
        self.acquired: dict[int, Array] = {}
        self.lds: dict[int, _Lds] = {}
        for name, type_ in self.lds_types.items():
            shape = (workgroups, *type_.shape)
            self.lds[name] = _Lds(
                data=_nan_fill(shape, type_.element),
                write_interval=np.full(shape, -1, np.int64),
                write_wave=np.full(shape, -1, np.int64),
                read_interval=np.full(shape, -1, np.int64),
                read_waves=np.zeros(shape, np.int64),
            )

    # --- execution ----------------------------------------------------------------------------------------------

    def _execute(self, region: list[tuple[Step, Op]], env: Env, mask: Array) -> Run:
        """The region's ops in order under `mask`; a generator that yields where its lanes wait (an mbarrier)
        and returns what the region yields."""
        for step, op in region:
            try:
                out = step(env, mask)
                if isinstance(out, Generator):
                    out = yield from out
            except _Located:
                raise
            except SimulationError as error:
                raise self._located(op, str(error)) from None
            except KeyError:
                raise self._located(op, "uses a value no lane defined (a branch or loop none of them ran)") from None
            self.progress += 1
            if out is not None:
                return out
        return None

    def _drive(self, run: Run) -> Values | None:
        """Run a region to its end; lanes waiting with nothing else left to run is a deadlock."""
        stalled, seen = 0, -1
        while True:
            try:
                next(run)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            stalled = stalled + 1 if self.progress == seen else 0
            seen = self.progress
            if stalled > 2:
                raise SimulationError(f"@{self.name}: deadlock: every lane waits on an mbarrier no lane can complete")

    def _interleaved(self, runs: list[Run]) -> Generator[None, None, list[Values | None]]:
        """Regions of different lanes (an scf.if's branches) side by side: each runs until it waits, then the
        next (the warps of a workgroup are independent: a producer warp and its consumers)."""
        results: list[Values | None] = [None] * len(runs)
        pending = dict(enumerate(runs))
        while pending:
            for index, run in list(pending.items()):
                try:
                    next(run)
                except StopIteration as stop:
                    results[index] = stop.value
                    del pending[index]
            if pending:
                yield
        return results

    def _located(self, op: Op, reason: str) -> _Located:
        location = op.location
        line = f" line {location.start_line}" if location.is_a_file() else ""
        first = str(op).split("\n", 1)[0]
        return _Located(f"@{self.name}{line}: {first[:160]}\n  {reason}")

    def _compile_block(self, block: Any) -> list[tuple[Step, Op]]:
        return [(self._compile(op), op) for op in block.operations]

    def _compile(self, op: Op) -> Step:
        op = op.operation
        compiler = _COMPILERS.get(op.name, Simulator._mfma if op.name in _MFMA else None)
        if compiler is None:
            raise self._located(op, f"op '{op.name}' is not modelled by the simulator")
        try:
            return compiler(self, op)
        except _Located:
            raise
        except (SimulationError, AttributeError, IndexError, ValueError) as error:
            raise self._located(op, f"cannot read it ({error})") from None

    def _slot(self, value: Any) -> int:
        """The env slot of an SSA value (numbered as first seen: MLIR's values hash by identity)."""
        return self._slots.setdefault(value, len(self._slots))

    def _ins(self, op: Op) -> list[int]:
        return [self._slot(value) for value in op.operands]

    def _outs(self, op: Op) -> list[int]:
        return [self._slot(value) for value in op.results]

    def _values(self, env: Env, slots: list[int]) -> Values:
        return [env[slot] for slot in slots]

    # --- scf ------------------------------------------------------------------------------------------------------

    def _scf_for(self, op: Op) -> Step:
        lo, hi, step_name, *inits = self._ins(op)
        block = op.regions[0].blocks[0]
        iv, *args = [self._slot(arg) for arg in block.arguments]
        results = self._outs(op)
        body = self._compile_block(block)

        def step(env: Env, mask: Array) -> Run:
            lo_value, hi_value, stride = env[lo], env[hi], env[step_name]
            if (stride[mask] <= 0).any():
                raise SimulationError("scf.for with a step <= 0")
            values = self._values(env, inits)
            index = lo_value
            active = mask & (index < hi_value)
            trips = 0
            while active.any():
                trips += 1
                if trips > _MAX_TRIPS:
                    raise SimulationError(f"scf.for ran {_MAX_TRIPS} iterations")
                env[iv] = index
                env.update(zip(args, values, strict=True))
                out = yield from self._execute(body, env, active)
                if args:
                    assert out is not None
                    values = [_where(active, new, old) for new, old in zip(out, values, strict=True)]
                index = index + stride
                active = active & (index < hi_value)
            env.update(zip(results, values, strict=True))
            return None

        return step

    def _scf_if(self, op: Op) -> Step:
        (cond,) = self._ins(op)
        types = [value_type(result.type) for result in op.results]
        results = self._outs(op)
        then = self._compile_block(op.regions[0].blocks[0])
        otherwise = self._compile_block(op.regions[1].blocks[0]) if len(op.regions[1].blocks) else None

        def step(env: Env, mask: Array) -> Run:
            taken = env[cond]
            then_mask, else_mask = mask & taken, mask & ~taken
            runs = [self._execute(then, env, then_mask) if then_mask.any() else _nothing()]
            if otherwise is not None and else_mask.any():
                runs.append(self._execute(otherwise, env, else_mask))
            then_values, else_values, *_ = [*(yield from self._interleaved(runs)), None]
            if results:
                undefined = [_undefined(t, self.lanes) for t in types]
                chosen = zip(then_values or undefined, else_values or undefined, strict=True)
                env.update(zip(results, [_where(taken, a, b) for a, b in chosen], strict=True))
            return None

        return step

    def _scf_while(self, op: Op) -> Step:
        inits = self._ins(op)
        types = [value_type(result.type) for result in op.results]
        results = self._outs(op)
        before_block, after_block = op.regions[0].blocks[0], op.regions[1].blocks[0]
        args = [self._slot(arg) for arg in before_block.arguments]
        after_args = [self._slot(arg) for arg in after_block.arguments]
        before = self._compile_block(before_block)
        after = self._compile_block(after_block)

        def step(env: Env, mask: Array) -> Run:
            values = self._values(env, inits)
            final = [_undefined(t, self.lanes) for t in types]
            active = mask.copy()
            for _ in range(_MAX_TRIPS):
                env.update(zip(args, values, strict=True))
                condition = yield from self._execute(before, env, active)
                assert condition is not None
                go, *forwarded = condition
                leaving = active & ~go
                final = [_where(leaving, f, old) for f, old in zip(forwarded, final, strict=True)]
                active = active & go
                if not active.any():
                    env.update(zip(results, final, strict=True))
                    return None
                env.update(zip(after_args, forwarded, strict=True))
                out = yield from self._execute(after, env, active)
                assert out is not None
                values = out
            raise SimulationError(f"scf.while ran {_MAX_TRIPS} iterations")

        return step

    def _scf_yield(self, op: Op) -> Step:
        operands = self._ins(op)
        return lambda env, mask: self._values(env, operands)

    def _scf_condition(self, op: Op) -> Step:
        operands = self._ins(op)
        return lambda env, mask: self._values(env, operands)

    def _gpu_return(self, op: Op) -> Step:
        return lambda env, mask: []

    # --- arith and math ----------------------------------------------------------------------------------------

    def _arith_constant(self, op: Op) -> Step:
        (result,) = self._outs(op)
        type_ = value_type(op.results[0].type)
        value = _constant(op.attributes["value"], type_)

        def step(env: Env, mask: Array) -> None:
            # Built per launch (the lane count changes with the batch).
            env[result] = np.full(type_.shape(self.lanes), value, type_.dtype)

        return step

    def _binary(self, op: Op) -> Step:
        # fastmath<contract> lets the back end fuse a product into the sum it feeds (one rounding instead of
        # two); the simulator rounds both, which the tests' bounds allow either way.
        a, b = self._ins(op)
        (result,) = self._outs(op)
        type_ = value_type(op.results[0].type)
        element = type_.element
        kind = op.name.removeprefix("arith.")
        floating = element in ("f32", "f64")
        if floating:
            function = {
                "addf": np.add, "subf": np.subtract, "mulf": np.multiply, "divf": np.divide,
                "maximumf": np.maximum, "minimumf": np.minimum,
            }[kind]  # fmt: skip

            contractible = "fastmath" in op.attributes and "contract" in str(op.attributes["fastmath"])
            if kind == "mulf" and contractible:
                per_lane = type_.count or 1

                def product_step(env: Env, mask: Array) -> None:
                    env[result] = function(env[a], env[b])
                    self.report.lane_macs += int(mask.sum()) * per_lane

                return product_step

            def float_step(env: Env, mask: Array) -> None:
                env[result] = function(env[a], env[b])

            return float_step
        unsigned = _UNSIGNED.get(element)
        bits = _BITS[element]

        def as_unsigned(value: Array) -> Array:
            return value if unsigned is None else value.view(unsigned)

        def int_step(env: Env, mask: Array) -> None:
            x, y = env[a], env[b]
            if kind in ("addi", "subi", "muli", "andi", "ori", "xori"):
                out = {"addi": np.add, "subi": np.subtract, "muli": np.multiply, "andi": np.bitwise_and,
                       "ori": np.bitwise_or, "xori": np.bitwise_xor}[kind](x, y)  # fmt: skip
            elif kind in ("divui", "remui"):
                if (as_unsigned(y)[mask] == 0).any():
                    raise SimulationError(f"arith.{kind} by zero")
                out = (np.floor_divide if kind == "divui" else np.remainder)(as_unsigned(x), as_unsigned(y))
                out = out.view(x.dtype)
            elif kind == "divsi":  # rounds toward zero
                if (y[mask] == 0).any():
                    raise SimulationError("arith.divsi by zero")
                safe = np.where(y == 0, 1, y)
                out = (np.sign(x) * np.sign(safe) * (np.abs(x) // np.abs(safe))).astype(x.dtype)
            elif kind in ("minsi", "maxsi"):
                out = (np.minimum if kind == "minsi" else np.maximum)(x, y)
            elif kind in ("minui", "maxui"):
                out = (np.minimum if kind == "minui" else np.maximum)(as_unsigned(x), as_unsigned(y)).view(x.dtype)
            elif kind in ("shli", "shrui"):
                if (as_unsigned(y)[mask] >= bits).any():
                    raise SimulationError(f"arith.{kind} by {bits} bits or more (poison)")
                amount = as_unsigned(y).astype(as_unsigned(x).dtype)
                shifted = np.left_shift if kind == "shli" else np.right_shift
                out = shifted(as_unsigned(x), amount).view(x.dtype)
            elif kind == "shrsi":  # arithmetic: the sign bit fills in (x's dtype is signed)
                if (as_unsigned(y)[mask] >= bits).any():
                    raise SimulationError(f"arith.{kind} by {bits} bits or more (poison)")
                out = np.right_shift(x, as_unsigned(y).astype(x.dtype))
            else:
                raise SimulationError(f"arith.{kind} is not modelled")
            env[result] = out.astype(type_.dtype, copy=False)

        return int_step

    def _cast(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        (result,) = self._outs(op)
        source, target = value_type(op.operands[0].type), value_type(op.results[0].type)
        kind = op.name.removeprefix("arith.")
        src, dst = source.element, target.element

        def convert(value: Array) -> Array:
            if kind == "bitcast":
                if source.dtype.itemsize != target.dtype.itemsize:
                    raise SimulationError(f"bitcast {src} -> {dst} changes the width")
                return np.ascontiguousarray(value).view(target.dtype)
            if kind == "index_cast":  # signed: sign-extends or truncates
                return value.astype(target.dtype)
            if kind == "extui":
                unsigned = value if src == "i1" else value.view(_UNSIGNED[src])
                return unsigned.astype(_UNSIGNED.get(dst, np.uint64)).view(target.dtype)
            if kind == "extsi":
                signed = value if src == "i1" else value.view(_SIGNED[src])
                return signed.astype(target.dtype)
            if kind == "trunci":
                unsigned = value.view(_UNSIGNED[src])
                mask_bits = np.array((1 << _BITS[dst]) - 1, unsigned.dtype)
                narrowed = (unsigned & mask_bits).astype(_UNSIGNED[dst] if dst != "i1" else np.bool_)
                return narrowed if dst == "i1" else narrowed.view(target.dtype)
            if kind in ("extf", "truncf"):
                return value.astype(target.dtype)
            if kind in ("sitofp", "uitofp"):  # rounded to nearest even, as numpy converts
                integer = value if src == "i1" else value.view((_SIGNED if kind == "sitofp" else _UNSIGNED)[src])
                return integer.astype(target.dtype)
            raise SimulationError(f"arith.{kind} is not modelled")

        def step(env: Env, mask: Array) -> None:
            env[result] = convert(env[operand])

        return step

    def _compare(self, op: Op) -> Step:
        a, b = self._ins(op)
        (result,) = self._outs(op)
        element = value_type(op.operands[0].type).element
        value = _ir().IntegerAttr(op.attributes["predicate"]).value
        floating = element in ("f32", "f64")  # (cmpf compares floats, cmpi integers and indices)
        predicate = (_CMPF if floating else _CMPI)[value]
        if floating:
            ordered = {"oeq": np.equal, "ogt": np.greater, "oge": np.greater_equal, "olt": np.less,
                       "ole": np.less_equal, "one": np.not_equal}  # fmt: skip

            def float_step(env: Env, mask: Array) -> None:
                x, y = env[a], env[b]
                nan = np.isnan(x) | np.isnan(y)
                if predicate == "uno":
                    env[result] = nan
                elif predicate == "ord":
                    env[result] = ~nan
                elif predicate in ordered:
                    env[result] = ordered[predicate](x, y) & ~nan
                elif predicate.startswith("u") and "o" + predicate[1:] in ordered:
                    env[result] = ordered["o" + predicate[1:]](x, y) | nan
                else:
                    raise SimulationError(f"arith.cmpf {predicate} is not modelled")

            return float_step
        functions = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
                     "ge": np.greater_equal}  # fmt: skip
        function = functions[predicate[-2:]]
        view = _UNSIGNED.get(element) if predicate[0] == "u" else _SIGNED.get(element)

        def int_step(env: Env, mask: Array) -> None:
            x, y = env[a], env[b]
            if view is not None and element != "i1":
                x, y = x.view(view), y.view(view)
            env[result] = function(x, y)

        return int_step

    def _select(self, op: Op) -> Step:
        cond, a, b = self._ins(op)
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = _where(env[cond], env[a], env[b])

        return step

    def _unary(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        (result,) = self._outs(op)
        type_ = value_type(op.results[0].type)
        if type_.element not in ("f32", "f64"):  # the one integer op among them: a population count
            unsigned = _UNSIGNED[type_.element]

            def count_step(env: Env, mask: Array) -> None:
                env[result] = np.bitwise_count(env[operand].view(unsigned)).astype(type_.dtype)

            return count_step
        functions: dict[str, Callable[[Array], Array]] = {
            "arith.negf": np.negative,
            "math.exp": np.exp,
            "math.log": np.log,
            "math.sqrt": np.sqrt,
            "math.rsqrt": lambda x: type_.dtype.type(1) / np.sqrt(x),
        }
        function = functions[op.name]

        def step(env: Env, mask: Array) -> None:
            env[result] = function(env[operand]).astype(type_.dtype, copy=False)

        return step

    def _call_intrinsic(self, op: Op) -> Step:
        """The LLVM intrinsics the NVVM math (tessera-expand-math, lowering/math/) calls: sqrt (correctly rounded, as
        sqrt.rn.f32) and exp2 in float64 rounded once to f32: within 0.5 ulp + 2^-29 ulp on every platform
        (numpy's float32 exp2 is the C library's or a SIMD one), where ex2.approx.f32 is within about 2 ulp."""
        functions: dict[str, Callable[[Array], Array]] = {
            "sqrt": np.sqrt, "exp2": lambda x: np.exp2(x.astype(np.float64)),
        }  # fmt: skip
        intrinsic = _ir().StringAttr(op.attributes["intrin"]).value
        prefix, base, suffix = [*intrinsic.split("."), "", ""][:3]
        if (prefix, suffix) != ("llvm", "f32") or base not in functions:
            raise SimulationError(f"the intrinsic {intrinsic} is not modelled")
        function = functions[base]
        (operand,) = self._ins(op)
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = function(env[operand]).astype(np.float32, copy=False)

        return step

    def _set_max_registers(self, op: Op) -> Step:
        """nvvm.setmaxregister (setmaxnreg.sync.aligned): registers are not modelled, so only its rules are — a
        count that is a multiple of 8 in [24, 256], executed by whole warps."""
        count = _ir().IntegerAttr(op.attributes["regCount"]).value
        if count % 8 or not 24 <= count <= 256:
            raise SimulationError(f"nvvm.setmaxregister {count}: not a multiple of 8 in [24, 256]")

        def step(env: Env, mask: Array) -> None:
            warps = mask.reshape(-1, self.wave_size)
            if not (warps.all(axis=1) | ~warps.any(axis=1)).all():
                raise SimulationError("nvvm.setmaxregister executed by part of a warp (it is .sync.aligned)")

        return step

    # --- vector ------------------------------------------------------------------------------------------------

    def _from_elements(self, op: Op) -> Step:
        operands = self._ins(op)
        type_ = value_type(op.results[0].type)
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = np.stack(self._values(env, operands), axis=1).astype(type_.dtype, copy=False)

        return step

    def _extract(self, op: Op) -> Step:
        operand, *dynamic = self._ins(op)
        position = list(_ir().DenseI64ArrayAttr(op.attributes["static_position"]))
        if dynamic or len(position) != 1:
            raise SimulationError("an extract at a dynamic or multi-dimensional position is not modelled")
        (item,) = position
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = np.ascontiguousarray(env[operand][:, item])

        return step

    def _broadcast(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        count = value_type(op.results[0].type).count
        if count is None or value_type(op.operands[0].type).count is not None:
            raise SimulationError("only a scalar broadcast to a vector is modelled")
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = np.repeat(env[operand][:, None], count, axis=1)

        return step

    def _shuffle_vector(self, op: Op) -> Step:
        a, b = self._ins(op)
        picked = np.array(list(_ir().DenseI64ArrayAttr(op.attributes["mask"])))
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = np.ascontiguousarray(np.concatenate([env[a], env[b]], axis=1)[:, picked])

        return step

    def _bitcast_vector(self, op: Op) -> Step:
        """The same bytes read as another vector type (little-endian, as both targets are)."""
        (operand,) = self._ins(op)
        target = value_type(op.results[0].type)
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = np.ascontiguousarray(env[operand]).view(target.dtype)

        return step

    # --- gpu and rocdl --------------------------------------------------------------------------------------------

    def _thread_id(self, op: Op) -> Step:
        if _keyword(op.attributes["dimension"]) != "x":
            raise SimulationError("workgroups are one-dimensional (known_block_size = [threads, 1, 1])")
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            env[result] = self.tid

        return step

    def _block_id(self, op: Op) -> Step:
        dimension = _keyword(op.attributes["dimension"])
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            if dimension == "z":
                env[result] = np.zeros(self.lanes, np.int64)
            else:
                env[result] = self.block_x if dimension == "x" else self.block_y

        return step

    def _barrier(self, op: Op) -> Step:
        def step(env: Env, mask: Array) -> None:
            arrived = mask.reshape(self.workgroups, self.threads)
            some, every = arrived.any(axis=1), arrived.all(axis=1)
            partial = np.flatnonzero(some & ~every)
            if partial.size:
                group = partial[0]
                count = int(arrived[group].sum())
                raise SimulationError(
                    f"gpu.barrier reached by {count} of {self.threads} threads of workgroup "
                    f"({self.block_x[group * self.threads]}, {self.block_y[group * self.threads]}) (divergent barrier)"
                )
            self.interval += some
            self.report.barriers += int(some.sum())

        return step

    def _gpu_shuffle(self, op: Op) -> Step:
        mode = _keyword(op.attributes["mode"])
        operand, offset_name, width_name = self._ins(op)
        type_ = value_type(op.operands[0].type)
        value_name, valid_name = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            value, offset, width = env[operand], _ints(env[offset_name]), _ints(env[width_name])
            if (
                (width[mask] <= 0) | (width[mask] > self.wave_size) | (self.wave_size % np.maximum(width[mask], 1) != 0)
            ).any():
                raise SimulationError(f"gpu.shuffle width must divide the wave of {self.wave_size}")
            within = self.lane_in_wave % width
            if mode == "xor":
                source = within ^ offset
            elif mode == "up":
                source = within - offset
            elif mode == "down":
                source = within + offset
            else:
                source = offset
            valid = (source >= 0) & (source < width)
            lane = np.arange(self.lanes) - within + np.where(valid, source, within)
            reads_inactive = mask & valid & ~mask[lane]
            if reads_inactive.any():
                first = int(np.flatnonzero(reads_inactive)[0])
                raise SimulationError(f"gpu.shuffle {mode}: active lane {first} reads inactive lane {lane[first]}")
            env[value_name] = _where(valid, value[lane], _undefined(type_, self.lanes))
            env[valid_name] = valid

        return step

    def _per_wave(self, values: Array) -> Array:
        return values.reshape(self.lanes // self.wave_size, self.wave_size, *values.shape[1:])

    def _readfirstlane(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            active = self._per_wave(mask)
            first = np.argmax(active, axis=1)  # lane 0 of a wave with no active lane: unused
            picked = self._per_wave(env[operand])[np.arange(active.shape[0]), first]
            env[result] = np.repeat(picked, self.wave_size, axis=0)

        return step

    def _ballot(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        (result,) = self._outs(op)
        weights = np.left_shift(np.uint64(1), np.arange(self.wave_size, dtype=np.uint64))

        def step(env: Env, mask: Array) -> None:
            votes = self._per_wave(env[operand] & mask).astype(np.uint64)
            masks = np.bitwise_or.reduce(votes * weights, axis=1)
            env[result] = np.repeat(masks, self.wave_size).view(np.int64)

        return step

    def _mbcnt(self, op: Op) -> Step:
        bits_name, base_name = self._ins(op)
        (result,) = self._outs(op)
        high = op.name.endswith(".hi")

        def step(env: Env, mask: Array) -> None:
            below = np.clip(self.lane_in_wave - (32 if high else 0), 0, 32).astype(np.uint64)
            lower = (np.uint64(1) << below) - np.uint64(1)
            counted = np.bitwise_count(env[bits_name].view(np.uint32).astype(np.uint64) & lower).astype(np.int32)
            env[result] = (counted + env[base_name]).astype(np.int32)

        return step

    def _mfma(self, op: Op) -> Step:
        name = op.name
        element, per_lane = _MFMA[name]
        a_name, b_name, acc_name, *controls = self._ins(op)
        if len(controls) != 3:
            raise SimulationError(f"{name}: {len(op.operands)} operands, not a, b, c, cbsz, abid, blgp")
        operand_type = value_type(op.operands[0].type)
        expected = ValueType(element, None if per_lane == 1 else per_lane)
        if operand_type != expected or value_type(op.results[0].type) != ValueType("f32", 4):
            raise SimulationError(f"{name}: operand types {operand_type} -> {op.results[0].type} do not match it")
        (result,) = self._outs(op)

        def widen(value: Array) -> Array:
            if element == "i16":
                return (value.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
            return value.astype(np.float64)

        def step(env: Env, mask: Array) -> None:
            for control in controls:
                if (env[control][mask] != 0).any():
                    raise SimulationError(f"{name}: cbsz / abid / blgp must be 0")
            active = self._per_wave(mask)
            some, every = active.any(axis=1), active.all(axis=1)
            if (some & ~every).any():
                wave = int(np.flatnonzero(some & ~every)[0])
                raise SimulationError(f"{name} in a partly active wave ({int(active[wave].sum())} of 64 lanes)")
            if self.wave_size != WAVE:
                raise SimulationError(f"{name} needs waves of {WAVE} lanes")
            waves = self.lanes // self.wave_size
            a = widen(env[a_name]).reshape(waves, 4, 16, per_lane)  # [w, q, c, i]
            b = widen(env[b_name]).reshape(waves, 4, 16, per_lane)
            acc = env[acc_name]
            a_matrix = a.transpose(0, 2, 1, 3).reshape(waves, 16, 4 * per_lane)  # A[c][kpl q + i]
            b_matrix = b.transpose(0, 1, 3, 2).reshape(waves, 4 * per_lane, 16)  # B[kpl q + i][c]
            d_matrix = acc.astype(np.float64).reshape(waves, 4, 16, 4).transpose(0, 1, 3, 2).reshape(waves, 16, 16)
            out = (d_matrix + a_matrix @ b_matrix).astype(np.float32)  # D[4 q + i][c]
            lanes = out.reshape(waves, 4, 4, 16).transpose(0, 1, 3, 2).reshape(self.lanes, 4)
            env[result] = _where(mask, lanes, acc)
            self.report.mfma += int(some.sum())
            self.report.matrix_macs += int(some.sum()) * 16 * 16 * 4 * per_lane

        return step

    # --- global memory ----------------------------------------------------------------------------------------

    def _getelementptr(self, op: Op) -> Step:
        ir = _ir()
        space = _address_space(op.operands[0].type)
        raw = list(ir.DenseI32ArrayAttr(op.attributes["rawConstantIndices"]))
        element_type = ir.TypeAttr(op.attributes["elem_type"]).value
        if len(raw) != 1:
            raise SimulationError("a getelementptr of several indices is not modelled")
        if space == _SHARED:
            return self._shared_getelementptr(op, element_type, raw[0])
        element = _element(element_type)
        if space != _GLOBAL or len(op.operands) != 2:
            raise SimulationError("only a global getelementptr by one dynamic index is modelled")
        base, offset_name = self._ins(op)
        (result,) = self._outs(op)
        if base in self._param_slots:
            name, _ = self.params[self._param_slots.index(base)]
            if self.elements.setdefault(name, element) != element:
                raise SimulationError(f"{name} addressed as {self.elements[name]} and {element}")

        def step(env: Env, mask: Array) -> None:
            pointer = env[base]
            if not isinstance(pointer, Pointer) or pointer.element not in (None, element):
                raise SimulationError(f"getelementptr on a value that is not a pointer parameter of element {element}")
            env[result] = Pointer(pointer.buffer, element, pointer.offset + _ints(env[offset_name]))

        return step

    def _global_access(self, pointer: Pointer, type_: ValueType, alignment: int | None, mask: Array) -> tuple[
        Array, Array, Array
    ]:  # fmt: skip
        """(active lanes, element indices [active, count], the buffer) of a checked global access."""
        if not isinstance(pointer, Pointer) or pointer.element is None:
            raise SimulationError("a global access through a value that is not a getelementptr")
        buffer = self.buffers[pointer.buffer]
        if np.dtype(_DTYPES[pointer.element]) != buffer.dtype or type_.element != pointer.element:
            raise SimulationError(
                f"'{pointer.buffer}' holds {buffer.dtype}, accessed as {type_.element} (GEP {pointer.element})"
            )
        active = np.flatnonzero(mask)
        count = type_.count or 1
        start = pointer.offset[active]
        outside = (start < 0) | (start + count > buffer.size)
        if outside.any():
            bad = start[outside]
            raise SimulationError(
                f"out of bounds on '{pointer.buffer}' ({buffer.size} elements): offsets {bad.min()}..{bad.max()} "
                f"(x{count}) by {int(outside.sum())} lanes"
            )
        if alignment is not None and ((start * buffer.dtype.itemsize) % alignment != 0).any():
            raise SimulationError(f"misaligned access on '{pointer.buffer}' (alignment {alignment})")
        return active, start[:, None] + np.arange(count), buffer

    def _memory_access(self, op: Op, address: Any) -> int | None:
        """A plain global load or store's declared alignment (None: the element's own); anything else refused."""
        ir = _ir()
        if _address_space(address.type) != _GLOBAL:
            raise SimulationError("a load or store outside global memory (address space 1) is not modelled")
        if "ordering" in op.attributes and ir.IntegerAttr(op.attributes["ordering"]).value != 0:
            raise SimulationError("an atomic load or store is not modelled")
        if "volatile_" in op.attributes:
            raise SimulationError("a volatile load or store is not modelled")
        return ir.IntegerAttr(op.attributes["alignment"]).value if "alignment" in op.attributes else None

    def _llvm_load(self, op: Op) -> Step:
        (address,) = self._ins(op)
        type_ = value_type(op.results[0].type)
        alignment = self._memory_access(op, op.operands[0])
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            pointer: Pointer = env[address]
            active, index, buffer = self._global_access(pointer, type_, alignment, mask)
            writers = self.writers[pointer.buffer][index]
            foreign = (writers >= 0) & (writers != self.global_group[active][:, None])
            if foreign.any():
                raise SimulationError(f"reads an element of '{pointer.buffer}' another workgroup wrote in this launch")
            out = np.zeros((self.lanes, type_.count or 1), buffer.dtype)
            out[active] = buffer[index]
            env[result] = out if type_.count else out[:, 0]

        return step

    def _llvm_store(self, op: Op) -> Step:
        value_name, address = self._ins(op)
        type_ = value_type(op.operands[0].type)
        if _address_space(op.operands[1].type) == _SHARED:
            return self._shared_store(value_name, address, type_)
        alignment = self._memory_access(op, op.operands[1])

        def step(env: Env, mask: Array) -> None:
            pointer: Pointer = env[address]
            active, index, buffer = self._global_access(pointer, type_, alignment, mask)
            value = env[value_name]
            if value.dtype != buffer.dtype:
                raise SimulationError(f"stores {value.dtype} into '{pointer.buffer}' of {buffer.dtype}")
            values = value[active].reshape(index.shape)
            groups = np.repeat(self.global_group[active][:, None], index.shape[1], axis=1)
            flat_index, flat_values, flat_groups = index.reshape(-1), values.reshape(-1), groups.reshape(-1)
            order = np.argsort(flat_index, kind="stable")
            same = flat_index[order][1:] == flat_index[order][:-1]
            if same.any():
                bits, ordered_groups = _bits(flat_values[order]), flat_groups[order]
                two_groups = same & (ordered_groups[1:] != ordered_groups[:-1])
                if two_groups.any():
                    at = int(flat_index[order][1:][two_groups][0])
                    first = int(ordered_groups[1:][two_groups][0])
                    raise SimulationError(
                        f"racy store: '{pointer.buffer}'[{at}] written by workgroups {first} and "
                        f"{int(ordered_groups[:-1][two_groups][0])} of one launch"
                    )
                if (same & (bits[1:] != bits[:-1])).any():
                    at = int(flat_index[order][1:][same & (bits[1:] != bits[:-1])][0])
                    raise SimulationError(f"racy store: lanes write different values to '{pointer.buffer}'[{at}]")
            writers = self.writers[pointer.buffer]
            previous = writers[flat_index]
            foreign = (previous >= 0) & (previous != flat_groups)
            if foreign.any():
                at = int(flat_index[foreign][0])
                raise SimulationError(
                    f"racy store: '{pointer.buffer}'[{at}] written by workgroups {int(previous[foreign][0])} and "
                    f"{int(flat_groups[foreign][0])} of one launch"
                )
            writers[flat_index] = flat_groups
            buffer[flat_index] = flat_values

        return step

    # --- LDS ------------------------------------------------------------------------------------------------------

    def _lds_access(self, op: Op, store: bool) -> tuple[int | None, int, list[int], ValueType]:
        """(the stored value, the memref, the indices, the type accessed) of a memref / vector load or store."""
        slots = self._ins(op)
        value, (memref, *indices) = (slots[0], slots[1:]) if store else (None, slots)
        if memref not in self.lds_types:
            raise SimulationError("an access to a memref that is not a workgroup attribution of the function")
        lds = self.lds_types[memref]
        if len(indices) != len(lds.shape):
            raise SimulationError(f"{lds.label}: {len(indices)} indices for a rank-{len(lds.shape)} memref")
        type_ = value_type((op.operands[0] if store else op.results[0]).type)
        if type_.element != lds.element:
            raise SimulationError(f"{lds.label} holds {lds.element}, accessed as {type_.element}")
        return value, memref, indices, type_

    def _lds_key(
        self, env: Env, memref: int, indices: list[int], count: int, mask: Array
    ) -> tuple[Array, tuple[Array, ...]]:
        """(active lanes, the fancy index [workgroup, i0, ..., last + 0..count-1]) of a checked LDS access."""
        shape, label = self.lds_types[memref].shape, self.lds_types[memref].label
        active = np.flatnonzero(mask)
        key: list[Array] = [self.group[active][:, None]]
        for axis, (index_name, extent) in enumerate(zip(indices, shape, strict=True)):
            index = _ints(env[index_name])[active]
            last = axis == len(shape) - 1
            span = count if last else 1
            outside = (index < 0) | (index + span > extent)
            if outside.any():
                bad = index[outside]
                raise SimulationError(
                    f"out of bounds on {label} {list(shape)}: index {axis} = {bad.min()}..{bad.max()}"
                    f"{f' (+{count})' if last and count > 1 else ''} by {int(outside.sum())} lanes"
                )
            key.append(index[:, None] + np.arange(count) if last else index[:, None])
        return active, tuple(key)

    def _lds_load(self, op: Op) -> Step:
        _, memref, indices, type_ = self._lds_access(op, store=False)
        label = self.lds_types[memref].label
        count = type_.count or 1
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            lds: _Lds = env[memref]
            active, key = self._lds_key(env, memref, indices, count, mask)
            waves = self.wave[active][:, None]
            interval = self.interval[self.group[active]][:, None]
            raced = (lds.write_interval[key] == interval) & (lds.write_wave[key] != waves)
            if raced.any():
                lane = int(active[np.flatnonzero(raced.any(axis=1))[0]])
                raise SimulationError(
                    f"LDS race on {label}: wave {self.wave[lane]} reads what another wave wrote with no barrier between"
                )
            self.report.uninitialized_lds_reads[label] += int((lds.write_interval[key] < 0).sum())
            stale = lds.read_interval[key] != interval
            lds.read_waves[key] = np.where(stale, 0, lds.read_waves[key])
            lds.read_interval[key] = np.broadcast_to(interval, stale.shape)
            np.bitwise_or.at(lds.read_waves, key, np.broadcast_to(np.left_shift(1, waves), stale.shape))
            out = np.zeros((self.lanes, count), lds.data.dtype)
            out[active] = lds.data[key]
            env[result] = out if type_.count else out[:, 0]

        return step

    def _lds_store(self, op: Op) -> Step:
        value_name, memref, indices, type_ = self._lds_access(op, store=True)
        assert value_name is not None
        label = self.lds_types[memref].label
        count = type_.count or 1

        def step(env: Env, mask: Array) -> None:
            lds: _Lds = env[memref]
            active, key = self._lds_key(env, memref, indices, count, mask)
            value = env[value_name]
            if value.dtype != lds.data.dtype:
                raise SimulationError(f"stores {value.dtype} into {label} of {lds.data.dtype}")
            values = value[active].reshape(len(active), count)
            waves = np.broadcast_to(self.wave[active][:, None], values.shape)
            interval = np.broadcast_to(self.interval[self.group[active]][:, None], values.shape)
            this_interval = lds.write_interval[key] == interval
            overwritten = this_interval & (lds.write_wave[key] != waves) & (_bits(lds.data[key]) != _bits(values))
            others_read = (lds.read_interval[key] == interval) & ((lds.read_waves[key] & ~np.left_shift(1, waves)) != 0)
            for raced, what in ((overwritten, "overwrites with a different value"), (others_read, "overwrites what")):
                if raced.any():
                    lane = int(active[np.flatnonzero(raced.any(axis=1))[0]])
                    detail = "another wave wrote" if raced is overwritten else "another wave read"
                    raise SimulationError(
                        f"LDS race on {label}: wave {self.wave[lane]} {what} {detail} with no barrier between"
                    )
            flat = np.ravel_multi_index(tuple(np.broadcast_to(k, values.shape) for k in key), lds.data.shape)
            flat, flat_values = flat.reshape(-1), values.reshape(-1)
            order = np.argsort(flat, kind="stable")
            same = flat[order][1:] == flat[order][:-1]
            bits = _bits(flat_values[order])
            if (same & (bits[1:] != bits[:-1])).any():
                raise SimulationError(f"racy store: lanes write different values to one element of {label}")
            lds.data[key] = values
            lds.write_interval[key] = interval
            lds.write_wave[key] = waves

        return step

    # --- Hopper: dynamic shared memory, mbarriers, TMA, WGMMA ----------------------------------------------------
    #
    # The model is synchronous: a bulk tensor copy lands when issued (completing its bytes on its mbarrier), a
    # WGMMA's result is ready when issued (fence, commit and wait are checks only); what makes it a model of the
    # asynchrony is that lanes wait on mbarriers, and an scf.if's branches run side by side (_interleaved), so
    # a producer warp and its consumers take turns exactly where they wait.

    def _shared_getelementptr(self, op: Op, element: Any, constant: int) -> Step:
        """A byte offset into the dynamic shared memory: a constant index, or one dynamic index."""
        if not (isinstance(element, _ir().IntegerType) and element.width == 8):
            raise SimulationError(f"a shared getelementptr over {element}, not bytes, is not modelled")
        base, *dynamic = self._ins(op)
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            pointer = env[base]
            if not isinstance(pointer, SharedPointer):
                raise SimulationError("getelementptr on a value that is not a shared pointer")
            delta = _ints(env[dynamic[0]]) if dynamic else constant
            env[result] = SharedPointer(pointer.offset + delta)

        return step

    def _shared_store(self, value_name: int, address: int, type_: ValueType) -> Step:
        """A store into the dynamic shared memory (little-endian bytes, naturally aligned, inside the launch's
        bytes), remembered as unfenced for the async proxy; lanes storing different bytes to one address race."""
        size = type_.dtype.itemsize * (type_.count or 1)

        def step(env: Env, mask: Array) -> None:
            pointer = env[address]
            if not isinstance(pointer, SharedPointer):
                raise SimulationError("a shared store through a value that is not a shared pointer")
            active = np.flatnonzero(mask)
            offsets = pointer.offset[active]
            if (
                (offsets % type_.dtype.itemsize).any()
                or (offsets < 0).any()
                or (offsets + size > self.shared_bytes).any()
            ):
                raise SimulationError(f"a shared store of {size} bytes outside or misaligned in {self.shared_bytes}")
            values = np.ascontiguousarray(env[value_name][active]).view(np.uint8).reshape(len(active), size)
            groups = self.group[active]
            at = offsets[:, None] + np.arange(size)[None, :]
            flat = groups[:, None] * self.shared_bytes + at
            order = np.argsort(flat.reshape(-1), kind="stable")
            keys, data = flat.reshape(-1)[order], values.reshape(-1)[order]
            if ((keys[1:] == keys[:-1]) & (data[1:] != data[:-1])).any():
                raise SimulationError("racy shared store: lanes write different values to one byte")
            self._check_not_held(groups, at, "a shared store")
            rows = np.repeat(groups, size)
            self.shared[rows, at.reshape(-1)] = values.reshape(-1)
            self.unfenced[rows, at.reshape(-1)] = np.repeat(self.tid[active], size)
            self.stored_interval[rows, at.reshape(-1)] = np.repeat(self.interval[groups], size)

        return step

    def _fence_proxy(self, op: Op) -> Step:
        """fence.proxy.async.shared::cta: each active thread's stores become visible to the async proxy."""
        if (_keyword(op.attributes["kind"]), _keyword(op.attributes["space"])) != ("async.shared", "cta"):
            raise SimulationError("only fence.proxy.async.shared::cta is modelled")

        def step(env: Env, mask: Array) -> None:
            for group in np.unique(self.group[mask]):
                fencing = self.tid[mask & (self.group == group)]
                self.unfenced[group][np.isin(self.unfenced[group], fencing)] = -1

        return step

    def _insertvalue(self, op: Op) -> Step:
        container, value = self._ins(op)
        (position,) = _ir().DenseI64ArrayAttr(op.attributes["position"])
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            out = env[container].copy()
            out[:, int(position)] = env[value]
            env[result] = out

        return step

    def _addressof(self, op: Op) -> Step:
        """The dynamic shared memory: an external global of address space 3 (its bytes sized at launch)."""
        ir = _ir()
        symbol = ir.FlatSymbolRefAttr(op.attributes["global_name"]).value
        declared = [
            candidate for candidate in self.function.parent.regions[0].blocks[0].operations
            if isinstance(candidate.operation.opview, _llvm().GlobalOp)
            and ir.StringAttr(candidate.attributes["sym_name"]).value == symbol
        ]  # fmt: skip
        if len(declared) != 1:
            raise SimulationError(f"@{symbol} is not a global of the GPU module")
        attributes = declared[0].attributes
        dynamic = (
            "addr_space" in attributes and ir.IntegerAttr(attributes["addr_space"]).value == _SHARED
            and _keyword(attributes["linkage"]) == "external" and "value" not in attributes
        )  # fmt: skip
        if not dynamic:
            raise SimulationError(f"@{symbol} is not the dynamic shared memory (an external shared global)")
        (result,) = self._outs(op)
        return lambda env, mask: env.__setitem__(result, SharedPointer(np.zeros(self.lanes, np.int64)))

    def _addrspacecast(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        if (_address_space(op.operands[0].type), _address_space(op.results[0].type)) != (_SHARED, _SHARED_CLUSTER):
            raise SimulationError("only a cast of a shared::cta pointer to shared::cluster is modelled")
        (result,) = self._outs(op)
        return lambda env, mask: env.__setitem__(result, env[operand])

    def _ptrtoint(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        if _address_space(op.operands[0].type) != _SHARED or value_type(op.results[0].type) != ValueType("i32"):
            raise SimulationError("only a shared pointer's 32-bit address is modelled")
        (result,) = self._outs(op)
        return lambda env, mask: env.__setitem__(result, (SHARED_WINDOW_BASE + env[operand].offset).astype(np.int32))

    def _undef(self, op: Op) -> Step:
        type_ = value_type(op.results[0].type)
        (result,) = self._outs(op)
        return lambda env, mask: env.__setitem__(result, _undefined(type_, self.lanes))

    def _extractvalue(self, op: Op) -> Step:
        (operand,) = self._ins(op)
        (position,) = _ir().DenseI64ArrayAttr(op.attributes["position"])
        (result,) = self._outs(op)
        return lambda env, mask: env.__setitem__(result, env[operand][:, int(position)].copy())

    def _barriers(self, env: Env, slot: int, mask: Array) -> list[tuple[int, _Mbarrier | None, int]]:
        """(lane, its mbarrier or None before init, its key's offset) for every active lane."""
        pointer = env[slot]
        if not isinstance(pointer, SharedPointer):
            raise SimulationError("an mbarrier address that is not a shared pointer")
        found = []
        for lane in np.flatnonzero(mask):
            offset = int(pointer.offset[lane])
            if offset % 8 or not 0 <= offset < self.shared_bytes:
                raise SimulationError(f"an mbarrier at shared byte {offset}: not 8-aligned inside {self.shared_bytes}")
            found.append((int(lane), self.mbarriers.get((int(self.group[lane]), offset)), offset))
        return found

    def _mbarrier_init(self, op: Op) -> Step:
        barrier, count = self._ins(op)  # (no predicate operand)

        def step(env: Env, mask: Array) -> None:
            for lane, _, offset in self._barriers(env, barrier, mask):
                arrivals = int(env[count][lane])
                self.mbarriers[int(self.group[lane]), offset] = _Mbarrier(arrivals, arrivals)

        return step

    def _mbarrier_arrive(self, op: Op) -> Step:
        """One arrival per active lane; expect_tx also adds its transaction bytes to the current phase."""
        expect = op.name.endswith("expect_tx")
        operands = self._ins(op)
        if len(operands) != (2 if expect else 1) or op.results:
            raise SimulationError(f"{op.name} with a predicate or a state result is not modelled")

        def step(env: Env, mask: Array) -> None:
            for lane, mbarrier, _ in self._barriers(env, operands[0], mask):
                if mbarrier is None:
                    raise SimulationError("arrives on an mbarrier never initialised")
                if expect:
                    mbarrier.tx += int(env[operands[1]][lane])
                pending = self.wgmma_groups.get(int(lane) // 128, [])
                if pending:
                    mbarrier.released = np.union1d(mbarrier.released, np.concatenate(pending))
                mbarrier.pending -= 1
                mbarrier.complete()

        return step

    def _mbarrier_try_wait(self, op: Op) -> Step:
        """Waits until the phase of the given parity has completed (the current phase's parity differs)."""
        barrier, parity, _ticks = self._ins(
            op
        )  # (a wait that gives up after its ticks is retried: it does not time out)

        def step(env: Env, mask: Array) -> Run:
            while True:
                waiting = [
                    lane for lane, mbarrier, _ in self._barriers(env, barrier, mask)
                    if mbarrier is None or mbarrier.phase % 2 == int(env[parity][lane])
                ]  # fmt: skip
                if not waiting:
                    for lane, mbarrier, _ in self._barriers(env, barrier, mask):
                        assert mbarrier is not None
                        self.acquired[lane] = mbarrier.last_released
                    return None
                yield

        return step

    def _bulk_tensor_copy(self, op: Op) -> Step:
        """A box of the tensor map at (column, row) into shared memory at the destination, 128-byte-swizzled, the
        elements past the tensor zero; its bytes (the whole box's) complete on the mbarrier."""
        view = op.opview
        coordinates = list(view.coordinates)
        if len(coordinates) != 2 or len(op.operands) != 5:
            raise SimulationError(
                "only a 2-D tile-mode copy (no im2col, multicast, cache hint or predicate) is modelled"
            )
        destination, map_name, barrier = (self._slot(value) for value in (view.dstMem, view.tmaDescriptor, view.mbar))
        column_name, row_name = (self._slot(value) for value in coordinates)

        def step(env: Env, mask: Array) -> None:
            tensor_map = env[map_name]
            if not isinstance(tensor_map, TensorMap) or tensor_map.box_cols * 2 != 128:
                raise SimulationError(f"{map_name}: not a tensor map of 128-byte box rows")
            rows, cols = tensor_map.array.shape
            r = np.arange(tensor_map.box_rows)[:, None]
            c = np.arange(tensor_map.box_cols)[None, :]
            for lane, mbarrier, _ in self._barriers(env, barrier, mask):
                if mbarrier is None:
                    raise SimulationError("a bulk copy completes on an mbarrier never initialised")
                row0, col0 = int(env[row_name][lane]), int(env[column_name][lane])
                inside = (row0 + r < rows) & (col0 + c < cols)
                values = np.where(
                    inside, tensor_map.array[np.minimum(row0 + r, rows - 1), np.minimum(col0 + c, cols - 1)], 0
                )
                start = int(env[destination].offset[lane])
                if start % 1024 or start + values.size * 2 > self.shared_bytes:
                    raise SimulationError(
                        f"a swizzled box at shared byte {start}: not 1024-aligned inside the allocation"
                    )
                where = _swizzled(SHARED_WINDOW_BASE + start + r * 128 + c * 2) - SHARED_WINDOW_BASE
                bytes_at = np.concatenate([where.reshape(-1), where.reshape(-1) + 1])
                self._check_not_held(self.group[lane : lane + 1], bytes_at[None, :], "a bulk tensor copy")
                if np.isin(bytes_at, self.acquired.get(lane, _NO_BYTES)).any():
                    raise SimulationError(
                        "a bulk tensor copy into shared bytes a pending WGMMA group read when their stage was "
                        "released (the release came before its wait_group)"
                    )
                shared = self.shared[self.group[lane]]
                shared[where] = (values & 0xFF).astype(np.uint8)
                shared[where + 1] = (values >> 8).astype(np.uint8)
                mbarrier.tx -= values.size * 2
                mbarrier.complete()

        return step

    def _warpgroups(self, mask: Array) -> Array:
        """The warpgroups (128 threads: workgroup-global numbers) with active lanes, each wholly active."""
        groups = (np.arange(self.lanes) // 128).reshape(-1, 128)
        active = mask.reshape(-1, 128)
        partial = active.any(axis=1) & ~active.all(axis=1)
        if partial.any():
            raise SimulationError("a warpgroup instruction with part of a warpgroup active (they are .aligned)")
        return groups[active.all(axis=1), 0]

    def _wgmma_sync(self, op: Op) -> Step:
        """A WGMMA fence, commit or wait, executed by whole warpgroups (.aligned). A product's value is ready
        when it is issued here, but the shared bytes it reads stay held: commit closes the open group of
        WGMMAs, wait_group N retires all but the N most recent committed groups (PTX ISA: "wgmma.wait_group"),
        and a store into a held byte is refused (_check_not_held)."""
        kind = op.name.split(".")[2]
        keep = _ir().IntegerAttr(op.attributes["group"]).value if kind == "wait" else 0

        def step(env: Env, mask: Array) -> None:
            for warpgroup in self._warpgroups(mask):
                groups = self.wgmma_groups.setdefault(int(warpgroup), [_NO_BYTES])
                if kind == "commit":
                    groups.append(_NO_BYTES)
                elif kind == "wait":
                    committed = groups[:-1]
                    retired = committed[: len(committed) - keep]
                    workgroup = int(warpgroup) * 128 // self.threads
                    for read in retired:
                        self.held[workgroup, read] -= 1
                    groups[:] = [*committed[len(retired) :], groups[-1]]

        return step

    def _hold(self, warpgroup: int, read: Array) -> None:
        """The shared bytes a WGMMA reads join its warpgroup's open group."""
        read = np.unique(read)
        groups = self.wgmma_groups.setdefault(warpgroup, [_NO_BYTES])
        fresh = np.setdiff1d(read, groups[-1], assume_unique=True)
        groups[-1] = np.union1d(groups[-1], fresh)
        self.held[warpgroup * 128 // self.threads, fresh] += 1

    def _check_not_held(self, groups: Array, at: Array, what: str) -> None:
        """Refuse stores into shared bytes (workgroups `groups`, byte offsets `at`, one row each) that a pending
        WGMMA group reads."""
        if (self.held[groups.reshape(-1, 1), at.reshape(len(groups), -1)] > 0).any():
            raise SimulationError(f"{what} into shared bytes a pending WGMMA group reads (no wait_group before it)")

    def _fence(self, op: Op) -> Step:
        """The mbarrier-init fence: initialisations are visible at once in this model."""
        return lambda env, mask: None

    def _wgmma(self, op: Op) -> Step:
        """D (64 x N, f32) = A (64 x 16 bf16) Bᵀ (B: N x 16, K-major) [+ D]: A and B read from shared memory
        through 128-byte-swizzle descriptors; D in the warpgroup's registers as the PTX ISA lays it out."""
        view = op.opview
        a_name, b_name, acc_name = (self._slot(value) for value in (view.descriptorA, view.descriptorB, view.inouts))
        words = {name: _keyword(op.attributes[name]) for name in ("typeA", "typeB", "typeD", "scaleA", "scaleB",
                                                                   "layoutA", "layoutB", "satfinite")}  # fmt: skip
        expected = {"typeA": "bf16", "typeB": "bf16", "typeD": "f32", "scaleA": "one", "scaleB": "one",
                    "layoutA": "row", "satfinite": "wrapped"}  # fmt: skip
        mn_major_b = words.pop("layoutB") == "row"  # MLIR's row B: imm-trans-b = 1, B N-major
        shape = dict(item.split(" = ") for item in _keyword(op.attributes["shape"]).split(", "))
        if words != expected or shape["m"] != "64" or shape["k"] != "16":
            raise SimulationError("only m64nNk16 bf16 x bf16 -> f32 with A K-major is modelled")
        n = int(shape["n"])
        scale = _keyword(op.attributes["scaleD"])
        (result,) = self._outs(op)

        def step(env: Env, mask: Array) -> None:
            out = env[acc_name].copy()
            for warpgroup in self._warpgroups(mask):
                lanes = np.arange(warpgroup * 128, warpgroup * 128 + 128)
                group = int(self.group[lanes[0]])
                a = self._operand(group, env[a_name][lanes], 64, warpgroup=int(warpgroup))
                b = self._operand(group, env[b_name][lanes], n, mn_major_b, warpgroup=int(warpgroup))
                product = a @ b.T
                if scale == "one":
                    product = product + _from_fragments(env[acc_name][lanes].astype(np.float64), n)
                out[lanes] = _to_fragments(product.astype(np.float32), n)
                self.report.matrix_macs += 64 * n * 16
            env[result] = out

        return step

    def _operand(self, group: int, descriptors: Array, rows: int, mn_major: bool = False,
                 warpgroup: int | None = None) -> Array:  # fmt: skip
        """A bf16 operand [rows, 16] (as float64) that a warpgroup-uniform descriptor describes (PTX ISA, "Shared
        Memory Matrix Layout", 128-byte swizzle: the address's 16-byte chunk XOR its row in the 1024-byte
        pattern): K-major, row r's element k at start + (r / 8) SBO + (r mod 8) 128 + 2 k; MN-major (a
        transposed B: its N contiguous), element (n, k) at start + (n / 64) LBO + (k / 8) SBO + (k mod 8) 128
        + 2 (n mod 64)."""
        if (descriptors != descriptors[0]).any():
            raise SimulationError("a WGMMA descriptor differs between the lanes of a warpgroup")
        descriptor = int(descriptors[0])
        if descriptor >> 62 != 1:
            raise SimulationError(f"WGMMA descriptor {descriptor:#x}: not the 128-byte swizzle mode")
        start, stride = (descriptor & 0x3FFF) << 4, ((descriptor >> 32) & 0x3FFF) << 4
        leading = ((descriptor >> 16) & 0x3FFF) << 4
        shared = self.shared[group]
        r, k = np.arange(rows)[:, None], np.arange(16)[None, :]
        if mn_major:
            unswizzled = start + (r // 64) * leading + (k // 8) * stride + (k % 8) * 128 + 2 * (r % 64)
        else:
            unswizzled = start + (r // 8) * stride + (r % 8) * 128 + 2 * k
        address = _swizzled(unswizzled) - SHARED_WINDOW_BASE
        if (address < 0).any() or (address + 1 >= shared.size).any():
            raise SimulationError("a WGMMA operand outside the dynamic shared memory")
        read = np.concatenate([address.reshape(-1), address.reshape(-1) + 1])
        if (self.unfenced[group][read] >= 0).any():
            raise SimulationError("a WGMMA reads shared bytes stored without a fence.proxy.async since")
        if (self.stored_interval[group][read] == self.interval[group]).any():
            raise SimulationError("a WGMMA reads shared bytes stored since the last barrier (a missing barrier)")
        if warpgroup is not None:
            self._hold(warpgroup, read)
        bits = shared[address].astype(np.uint32) | (shared[address + 1].astype(np.uint32) << 8)
        return (bits << 16).view(np.float32).astype(np.float64)


def _swizzled(address: Array | int) -> Array:
    """The 128-byte swizzle of a shared address: its 16-byte chunk (bits 4-6) XOR its row in the pattern (bits 7-9)."""
    address = np.asarray(address)
    return address ^ (((address >> 7) & 7) << 4)


def _fragment_places(n: int) -> tuple[Array, Array]:
    """(row, column) of register i of thread t of a warpgroup's m64nN f32 accumulator, [128, N/2] each (PTX
    ISA, "Register Fragments" of wgmma D): warp w = t / 32 has rows 16 w ..; lane l's register i is at row
    16 w + l / 4 + 8 ((i / 2) mod 2), column 8 (i / 4) + 2 (l mod 4) + (i mod 2)."""
    t, i = np.arange(128)[:, None], np.arange(n // 2)[None, :]
    warp, lane = t // 32, t % 32
    return 16 * warp + lane // 4 + 8 * ((i // 2) % 2), 8 * (i // 4) + 2 * (lane % 4) + i % 2


def _to_fragments(matrix: Array, n: int) -> Array:
    rows, cols = _fragment_places(n)
    return matrix[rows, cols]


def _from_fragments(registers: Array, n: int) -> Array:
    rows, cols = _fragment_places(n)
    matrix = np.full((64, n), np.nan)
    matrix[rows, cols] = registers
    return matrix


_BINARY = "addf subf mulf divf maximumf minimumf addi subi muli andi ori xori divui divsi remui minsi maxsi minui maxui shli shrui shrsi"
_CASTS = "bitcast index_cast extui extsi trunci extf truncf sitofp uitofp"
_Compiler = Callable[[Simulator, Op], Step]
_COMPILERS: dict[str, _Compiler] = {
    "scf.for": Simulator._scf_for,
    "scf.if": Simulator._scf_if,
    "scf.while": Simulator._scf_while,
    "scf.yield": Simulator._scf_yield,
    "scf.condition": Simulator._scf_condition,
    "gpu.return": Simulator._gpu_return,
    "gpu.thread_id": Simulator._thread_id,
    "gpu.block_id": Simulator._block_id,
    "gpu.barrier": Simulator._barrier,
    "gpu.shuffle": Simulator._gpu_shuffle,
    "rocdl.readfirstlane": Simulator._readfirstlane,
    "rocdl.ballot": Simulator._ballot,
    "rocdl.mbcnt.lo": Simulator._mbcnt,
    "rocdl.mbcnt.hi": Simulator._mbcnt,
    "arith.constant": Simulator._arith_constant,
    "arith.cmpi": Simulator._compare,
    "arith.cmpf": Simulator._compare,
    "arith.select": Simulator._select,
    "arith.negf": Simulator._unary,
    "math.exp": Simulator._unary,
    "math.log": Simulator._unary,
    "math.sqrt": Simulator._unary,
    "math.rsqrt": Simulator._unary,
    "math.ctpop": Simulator._unary,
    "llvm.call_intrinsic": Simulator._call_intrinsic,
    "vector.from_elements": Simulator._from_elements,
    "vector.extract": Simulator._extract,
    "vector.broadcast": Simulator._broadcast,
    "vector.shuffle": Simulator._shuffle_vector,
    "vector.bitcast": Simulator._bitcast_vector,
    "vector.load": Simulator._lds_load,
    "vector.store": Simulator._lds_store,
    "memref.load": Simulator._lds_load,
    "memref.store": Simulator._lds_store,
    "llvm.getelementptr": Simulator._getelementptr,
    "llvm.mlir.addressof": Simulator._addressof,
    "llvm.addrspacecast": Simulator._addrspacecast,
    "llvm.ptrtoint": Simulator._ptrtoint,
    "llvm.mlir.undef": Simulator._undef,
    "llvm.extractvalue": Simulator._extractvalue,
    "llvm.insertvalue": Simulator._insertvalue,
    "nvvm.fence.proxy": Simulator._fence_proxy,
    "nvvm.mbarrier.init": Simulator._mbarrier_init,
    "nvvm.fence.mbarrier.init": Simulator._fence,
    "nvvm.mbarrier.arrive": Simulator._mbarrier_arrive,
    "nvvm.mbarrier.arrive.expect_tx": Simulator._mbarrier_arrive,
    "nvvm.mbarrier.try_wait.parity": Simulator._mbarrier_try_wait,
    "nvvm.cp.async.bulk.tensor.shared.cluster.global": Simulator._bulk_tensor_copy,
    "nvvm.wgmma.fence.aligned": Simulator._wgmma_sync,
    "nvvm.wgmma.commit.group.sync.aligned": Simulator._wgmma_sync,
    "nvvm.wgmma.wait.group.sync.aligned": Simulator._wgmma_sync,
    "nvvm.wgmma.mma_async": Simulator._wgmma,
    "nvvm.setmaxregister": Simulator._set_max_registers,
    "llvm.load": Simulator._llvm_load,
    "llvm.store": Simulator._llvm_store,
    **{f"arith.{op}": Simulator._binary for op in _BINARY.split()},
    **{f"arith.{op}": Simulator._cast for op in _CASTS.split()},
}

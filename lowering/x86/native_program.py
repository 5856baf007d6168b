"""The x86 native program: each program of program.json (@prefill, @decode) lowered to one exported function
that runs its whole launch list, each kernel grid split over threads by MLIR's OpenMP lowering (the omp
dialect's parallel + wsloop, translated to the LLVM OpenMP runtime's `__kmpc_*` calls; libiomp5 runs them).
Decoding a token is one call from Python.

The ABI (runtime/x86_session.py binds it):

    void <kernel>__launch(const uint64_t *words, int64_t begin, int64_t end)
        The kernel's launch entry: calls <kernel> with its arguments read from `words` (each memref
        argument as MLIR's LLVM lowering expands it: allocated and aligned pointers, offset, sizes, strides;
        each scalar one word) and the [begin, end) range of its grid. Every kernel and matrix variant has one,
        so a program calls every kernel through one function type and the runtime binds whichever runs.

    void tessera_<program>(const uint64_t *launches, int64_t tokens, int64_t threads)
        launches[2i] is launch i's entry (a __launch function), launches[2i + 1] its words.
    void tessera_<program>__profile(const uint64_t *launches, int64_t tokens, int64_t threads, uint64_t *ticks)
        The instrumented mode (tessera-run --profile): adds the cycle counter's ticks of the call to ticks[0],
        of launch i to ticks[1 + i], and of thread t's time inside kernels to ticks[1 + L + t].

Each entry is a loop over the program's launch table (a constant of the library: per launch its grid, align
and cost). Threads per launch, decided at run time from those constants: the launch's cost estimate —
the bytes it streams, its weights and state whole and its activations per token — over GRAIN_BYTES, capped by
its grid's units (runs of `align`) and the threads the runtime allows. One thread is a plain call (no fork);
otherwise thread t of n runs units [t * units / n, (t + 1) * units / n). Every thread runs kernels with
denormals flushed (MXCSR FTZ | DAZ), the caller's MXCSR restored on return.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera import toolchain
from tessera.runtime.native import LAUNCH_SUFFIX, entry_symbol
from tessera.runtime.program_check import PROGRAMS

# A thread pays for its fork and join (a few microseconds in libiomp5) once it has this many bytes to
# stream: ~5 µs at one core's ~12 GB/s.
GRAIN_BYTES = 64 << 10
_DTYPE_BYTES = {"f32": 4, "bf16": 2, "i64": 8}
# Bumped whenever the ABI above changes: part of the kernel cache's key for code that carries it.
ABI_VERSION = "launch-1"


@dataclass(frozen=True)
class LaunchCost:
    """A launch as the program entry sees it (a row of its launch table): its grid (0: one unit per token),
    the run length its units split at, and the bytes it streams (fixed + per_token * tokens)."""

    grid: int
    align: int
    fixed_bytes: int
    per_token_bytes: int


def launch_costs(program: Mapping[str, Any], name: str) -> list[LaunchCost]:
    """Each launch of program `name`, with the cost estimate made from its arguments' shapes."""
    costs = []
    for launch in program["programs"][name]["launches"]:
        fixed = per_token = 0
        for arg in launch["args"]:
            if "weight" in arg:
                entry = program["weights"][arg["weight"]]
                element = 2 if entry.get("packing", {}).get("dtype") == "bf16" else 4
                fixed += math.prod(entry["shape"]) * element
            elif "state" in arg:
                entry = program["states"][arg["state"]]
                fixed += math.prod(entry["shape"]) * _DTYPE_BYTES[entry["dtype"]]
            elif "buffer" in arg:
                per_token += int(arg["features"]) * _DTYPE_BYTES[arg["dtype"]]
        costs.append(LaunchCost(int(launch["grid"]), int(launch.get("align", 1)), fixed, per_token))
    return costs


# --- IR -----------------------------------------------------------------------------------------------


class _Builder:
    """The llvm-dialect ops the entries are made of, at one insertion point (MLIR 22's bindings)."""

    def __init__(self, ir: Any, llvm: Any, ip: Any) -> None:
        self.ir, self.llvm, self.ip = ir, llvm, ip
        self.i32, self.i64 = ir.IntegerType.get_signless(32), ir.IntegerType.get_signless(64)
        self.ptr = llvm.PointerType.get()
        self._none = llvm.IntegerOverflowFlags.none

    def const(self, value: int, width: int = 64) -> Any:
        kind = self.i64 if width == 64 else self.i32
        return self.llvm.mlir_constant(self.ir.IntegerAttr.get(kind, value), ip=self.ip)

    def add(self, a: Any, b: Any) -> Any:
        return self.llvm.AddOp(a, b, self._none, ip=self.ip).result

    def sub(self, a: Any, b: Any) -> Any:
        return self.llvm.SubOp(a, b, self._none, ip=self.ip).result

    def mul(self, a: Any, b: Any) -> Any:
        return self.llvm.MulOp(a, b, self._none, ip=self.ip).result

    def div(self, a: Any, b: Any) -> Any:
        return self.llvm.SDivOp(a, b, ip=self.ip).result

    def less(self, a: Any, b: Any) -> Any:
        return self.llvm.ICmpOp(self.llvm.ICmpPredicate.slt, a, b, ip=self.ip).result

    def equal(self, a: Any, b: Any) -> Any:
        return self.llvm.ICmpOp(self.llvm.ICmpPredicate.eq, a, b, ip=self.ip).result

    def min(self, a: Any, b: Any) -> Any:
        return self.llvm.SelectOp(self.less(a, b), a, b, ip=self.ip).result

    def max(self, a: Any, b: Any) -> Any:
        return self.llvm.SelectOp(self.less(a, b), b, a, ip=self.ip).result

    def element(self, base: Any, index: Any, kind: Any) -> Any:
        """&base[index] for 8-byte elements of `kind`."""
        return self.llvm.GEPOp(self.ptr, base, [index], [_DYNAMIC_INDEX], kind, [], ip=self.ip).result

    def load(self, base: Any, index: int | Any, kind: Any) -> Any:
        at = self.element(base, self.const(index) if isinstance(index, int) else index, kind)
        return self.llvm.LoadOp(kind, at, ip=self.ip).result

    def store(self, value: Any, base: Any, index: Any) -> None:
        self.llvm.StoreOp(value, self.element(base, index, self.i64), ip=self.ip)

    def call(self, callee: Any, args: list[Any]) -> None:
        """An indirect call of a `void (ptr, i64, i64)` function: every launch entry has that type."""
        self.llvm.CallOp(None, [callee, *args], [], [], ip=self.ip)

    def global_address(self, symbol: str, size: int) -> Any:
        """The address of the constant table `symbol` of `size` i64 (a memref global), as a pointer."""
        memref, arith = _dialect("memref"), _dialect("arith")
        table = memref.GetGlobalOp(self.ir.MemRefType.get([size], self.i64), symbol, ip=self.ip).result
        address = memref.ExtractAlignedPointerAsIndexOp(table, ip=self.ip).result
        return self.llvm.IntToPtrOp(
            self.ptr, arith.IndexCastOp(self.i64, address, ip=self.ip).result, ip=self.ip
        ).result

    def ticks(self) -> Any:
        return self.llvm.CallIntrinsicOp(self.i64, "llvm.readcyclecounter", [], [], [], ip=self.ip).result

    def flush_denormals(self) -> Any:
        """Set this thread's MXCSR to flush denormal results and inputs to zero (FTZ | DAZ); returns the
        stack slot holding the previous MXCSR, for restore_mxcsr."""
        slot = self.llvm.AllocaOp(self.ptr, self.const(1, 32), self.i32, ip=self.ip).result
        self._mxcsr("llvm.x86.sse.stmxcsr", slot)
        previous = self.llvm.LoadOp(self.i32, slot, ip=self.ip).result
        flushing = self.llvm.OrOp(previous, self.const(_FTZ | _DAZ, 32), ip=self.ip).result
        scratch = self.llvm.AllocaOp(self.ptr, self.const(1, 32), self.i32, ip=self.ip).result
        self.llvm.StoreOp(flushing, scratch, ip=self.ip)
        self._mxcsr("llvm.x86.sse.ldmxcsr", scratch)
        return slot

    def restore_mxcsr(self, slot: Any) -> None:
        self._mxcsr("llvm.x86.sse.ldmxcsr", slot)

    def _mxcsr(self, intrinsic: str, slot: Any) -> None:
        self.llvm.CallIntrinsicOp(None, intrinsic, [slot], [], [], ip=self.ip)


# MXCSR's flush-to-zero and denormals-are-zero bits. A kernel's float work runs with both set: the SSD scan's
# decays exp(cum) of fast-decaying heads fall below 2^-126, and every FMA on such a denormal takes a
# microcode assist (measured: the scan's heads 16-31 of the mid model 2.6x slower than heads 0-15); values
# that small are below every tolerance the kernels are held to.
_FTZ, _DAZ = 0x8000, 0x0040


# GEP's raw constant index that means "the next dynamic index" (LLVM::GEPOp::kDynamicIndex).
_DYNAMIC_INDEX = -(2**31)


def add_launch_entries(module: Any) -> None:
    """Beside every kernel (a public function with a body, after MLIR's lowering to the llvm dialect) its
    launch entry `<kernel>__launch(words, begin, end)`, built in the func dialect and lowered with the
    kernels' own conversion. Called with the bindings' module, in its context."""
    ir, llvm, func = toolchain.mlir().ir, _dialect("llvm"), _dialect("func")
    body = module.body
    i64, ptr = ir.IntegerType.get_signless(64), llvm.PointerType.get()
    for op in list(body.operations):
        if not isinstance(op.opview, llvm.LLVMFuncOp) or not op.regions[0].blocks:
            continue
        name = ir.StringAttr(op.attributes["sym_name"]).value
        if name.endswith(LAUNCH_SUFFIX) or "sym_visibility" in op.attributes:
            continue
        params = [arg.type for arg in op.regions[0].blocks[0].arguments]
        entry = func.FuncOp(
            f"{name}{LAUNCH_SUFFIX}", ir.FunctionType.get([ptr, i64, i64], []), ip=ir.InsertionPoint(body)
        )
        block = entry.add_entry_block()
        b = _Builder(ir, llvm, ir.InsertionPoint(block))
        words, begin, end = block.arguments
        args = []
        for index, kind in enumerate(params[:-2]):  # the last two are [begin, end)
            if not (kind.typeid == llvm.PointerType.static_typeid or kind == b.i64):
                raise toolchain.ToolchainError(f"@{name}: parameter {index} is {kind}, not a pointer or i64 word")
            args.append(b.load(words, index, kind))
        llvm.CallOp(None, [*args, begin, end], [], [], callee=ir.FlatSymbolRefAttr.get(name), ip=b.ip)
        func.ReturnOp([], ip=b.ip)
    toolchain.run_passes(module, "convert-func-to-llvm")


def _dialect(name: str) -> Any:
    """An upstream dialect's Python module of MLIR 22's bindings (importable once toolchain.mlir() ran)."""
    import importlib

    toolchain.mlir()
    return importlib.import_module(f"mlir.dialects.{name}")


# The entries' omp ops to LLVM's OpenMP runtime calls (the OpenMPIRBuilder outlines each parallel region),
# their constant tables (memref globals) and functions to the llvm dialect.
OPENMP_PIPELINE = (
    "convert-scf-to-cf,finalize-memref-to-llvm,convert-arith-to-llvm,convert-openmp-to-llvm,convert-cf-to-llvm,"
    "convert-func-to-llvm,reconcile-unrealized-casts"
)


def to_llvm_ir(entries: str) -> str:
    """entries_module's MLIR -> LLVM IR."""
    return toolchain.translate_to_llvm_ir(toolchain.run_pipeline(entries, OPENMP_PIPELINE))


def digest_llvm_ir(program: Mapping[str, Any]) -> str:
    """LLVM IR of the program digest alone (for a library of kernel variants the programs do not name)."""
    return to_llvm_ir(entries_module(program, with_entries=False))


def entries_module(program: Mapping[str, Any], with_entries: bool = True) -> str:
    """The program entries of every program (plain and instrumented) and the exported digest, as MLIR in the
    llvm and omp dialects (MLIR 22's custom form)."""
    from tessera.runtime.program_check import PROGRAM_DIGEST_SYMBOL, program_digest

    ir, llvm, omp = toolchain.mlir().ir, _dialect("llvm"), _dialect("openmp")
    with ir.Context(), ir.Location.unknown():
        module = ir.Module.create()
        digest = np.frombuffer(program_digest(program).encode("ascii"), np.int8)  # 64 hex characters
        _constant_table(ir, module.body, PROGRAM_DIGEST_SYMBOL, digest, exported=True)
        for name in PROGRAMS if with_entries else ():
            costs = launch_costs(program, name)
            table = _launch_table(ir, module.body, name, costs)
            for profile in (False, True):
                _entry(ir, llvm, omp, module.body, name, len(costs), table, profile)
        module.operation.verify()
        stream = io.StringIO()
        module.operation.print(file=stream, use_name_loc_as_prefix=True)
        return stream.getvalue()


def _constant_table(ir: Any, body: Any, symbol: str, values: np.ndarray, exported: bool = False) -> None:
    """A constant global of the library holding `values` (a memref global, lowered to an LLVM global of the
    same name: external where exported, else internal)."""
    memref = _dialect("memref")
    element = ir.IntegerType.get_signless(values.dtype.itemsize * 8)
    data = ir.DenseElementsAttr.get(values, type=ir.RankedTensorType.get([len(values)], element))
    kind = ir.MemRefType.get([len(values)], element)
    visibility = "public" if exported else "private"
    memref.GlobalOp(symbol, ir.TypeAttr.get(kind), sym_visibility=visibility, initial_value=data, constant=True,
                    alignment=8, ip=ir.InsertionPoint(body))  # fmt: skip


def _launch_table(ir: Any, body: Any, name: str, costs: list[LaunchCost]) -> str:
    """The program's launches as constants the entry loops over: per launch its grid (0: the token count),
    align, fixed bytes and bytes per token (COST_FIELDS), an internal global of the library."""
    symbol = f"tessera_{name}_launch_costs"
    values = [value for cost in costs for value in (cost.grid, cost.align, cost.fixed_bytes, cost.per_token_bytes)]
    _constant_table(ir, body, symbol, np.array(values, np.int64))
    return symbol


COST_FIELDS = 4  # grid, align, fixed bytes, bytes per token


def _entry(ir: Any, llvm: Any, omp: Any, body: Any, name: str, count: int, table: str, profile: bool) -> None:
    """The program's entry: a loop over its `count` launches (their costs in the global `table`), each a
    plain call or an OpenMP team as its cost says."""
    scf, func = _dialect("scf"), _dialect("func")
    ptr, i64 = llvm.PointerType.get(), ir.IntegerType.get_signless(64)
    params = [ptr, i64, i64, *([ptr] if profile else [])]
    function = func.FuncOp(entry_symbol(name, profile), ir.FunctionType.get(params, []), ip=ir.InsertionPoint(body))
    block = function.add_entry_block()
    for arg, label in zip(block.arguments, ("launches", "tokens", "threads", "ticks"), strict=False):
        arg.set_location(ir.Location.name(label))  # printed as the parameter's name
    launches, tokens, threads = block.arguments[:3]
    ticks = block.arguments[3] if profile else None
    b = _Builder(ir, llvm, ir.InsertionPoint(block))
    caller_mxcsr = b.flush_denormals()  # restored before returning to the caller
    start = b.ticks() if profile else None
    costs_at = b.global_address(table, count * COST_FIELDS)
    loop = scf.ForOp(b.const(0), b.const(count), b.const(1), ip=b.ip)
    step = _Builder(ir, llvm, ir.InsertionPoint(loop.body))
    index = loop.induction_variable
    grid, align, fixed, per_token = (
        step.load(costs_at, step.add(step.mul(index, step.const(COST_FIELDS)), step.const(field)), i64)
        for field in range(COST_FIELDS)
    )
    callee = step.load(launches, step.mul(index, step.const(2)), ptr)
    words = step.load(launches, step.add(step.mul(index, step.const(2)), step.const(1)), ptr)
    extent = llvm.SelectOp(step.equal(grid, step.const(0)), tokens, grid, ip=step.ip).result
    units = step.div(step.add(extent, step.sub(align, step.const(1))), align)
    work = step.add(fixed, step.mul(per_token, tokens))
    team = step.min(step.min(threads, units), step.max(step.div(work, step.const(GRAIN_BYTES)), step.const(1)))
    began = step.ticks() if profile else None
    first_busy = 1 + count
    split = scf.IfOp(step.less(step.const(1), team), has_else=True, ip=step.ip)
    fork = _Builder(ir, llvm, ir.InsertionPoint(split.then_block))
    _team(ir, llvm, omp, fork, callee, words, extent, units, align, team, ticks, first_busy)
    scf.YieldOp([], ip=fork.ip)
    alone = _Builder(ir, llvm, ir.InsertionPoint(split.else_block))
    _timed_call(alone, callee, [words, alone.const(0), extent], ticks, first_busy)
    scf.YieldOp([], ip=alone.ip)
    if profile:
        _add_ticks(step, ticks, step.add(index, step.const(1)), began)
    scf.YieldOp([], ip=step.ip)
    if profile:
        _add_ticks(b, ticks, b.const(0), start)
    b.restore_mxcsr(caller_mxcsr)
    func.ReturnOp([], ip=b.ip)


def _team(ir: Any, llvm: Any, omp: Any, fork: _Builder, callee: Any, words: Any, extent: Any, units: Any,
          align: Any, count: Any, ticks: Any, first_busy: int) -> None:  # fmt: skip
    """The launch over a team of `count` threads: thread t runs its units [t units / n, (t + 1) units / n)."""
    zero, one = fork.const(0), fork.const(1)  # outside the loop wrapper, which holds the loop nest alone
    threads = llvm.TruncOp(fork.i32, count, fork._none, ip=fork.ip).result
    parallel = omp.ParallelOp([], [], [], [], num_threads=threads, ip=fork.ip)
    team = _Builder(ir, llvm, ir.InsertionPoint(parallel.region.blocks.append()))
    loop = omp.WsloopOp([], [], [], [], [], [], ip=team.ip)
    omp.TerminatorOp(ip=team.ip)
    wrapper = _Builder(ir, llvm, ir.InsertionPoint(loop.region.blocks.append()))
    nest = omp.LoopNestOp([zero], [count], [one], ip=wrapper.ip)
    inner = _Builder(ir, llvm, ir.InsertionPoint(nest.region.blocks.append(fork.i64)))
    part = nest.region.blocks[0].arguments[0]

    def unit_start(part: Any) -> Any:
        return inner.mul(inner.div(inner.mul(part, units), count), align)

    begin = unit_start(part)
    end = inner.min(unit_start(inner.add(part, inner.const(1))), extent)
    worker_mxcsr = inner.flush_denormals()  # each thread of the team has its own MXCSR
    _timed_call(inner, callee, [words, begin, end], ticks, first_busy, part)
    inner.restore_mxcsr(worker_mxcsr)
    omp.YieldOp([], ip=inner.ip)


def _timed_call(b: _Builder, callee: Any, args: list[Any], ticks: Any, first_busy: int, part: Any = None) -> None:
    """The call; in the instrumented mode its ticks are added to its thread's busy slot (first_busy + part,
    the calling thread's where the launch is not split)."""
    began = b.ticks() if ticks is not None else None
    b.call(callee, args)
    if ticks is not None:
        slot = b.const(first_busy) if part is None else b.add(b.const(first_busy), part)
        _add_ticks(b, ticks, slot, began)


def _add_ticks(b: _Builder, ticks: Any, slot: Any, began: Any) -> None:
    at = b.element(ticks, slot, b.i64)
    total = b.add(b.llvm.LoadOp(b.i64, at, ip=b.ip).result, b.sub(b.ticks(), began))
    b.llvm.StoreOp(total, at, ip=b.ip)

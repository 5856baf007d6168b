"""The x86 target: Graph-IR -> Schedule-IR -> Tile-IR -> upstream MLIR kernels -> LLVM IR -> x86-64 code.

Stages (each observable with `tessera-compile --emit=<stage>` and `--dump-ir DIR`):
    schedule   convert-tessera-graph-to-schedule, tessera-schedule-plan-buffers
    tile       convert-tessera-schedule-to-tile, tessera-tile-choose-tiles{target=x86},
               tessera-tile-compute-footprint
    x86        the kernels in upstream MLIR (func, scf, arith, memref, vector, math)
    llvm       MLIR 22's conversions to the llvm dialect, mlir-translate: LLVM IR
    so         an ahead-of-time shared library for the x86-64 baseline (llvmlite + the C compiler driver)

OUT/x86/ holds kernels.ll (the runtime JIT-compiles it for the exact host CPU when llvmlite is present),
kernels.so (loaded where it is not), program.json (the launch lists, weights, state) and the IR of every
stage. Each kernel is compiled separately through the on-disk kernel cache, so identical kernels — across
layers, models and runs — compile once.

Every library and kernels.ll also define `tessera_kernel_table_sha256`: the digest of program.json's
`kernels` table (runtime/program_check.kernel_table_digest), which the runtime compares with the table it
reads before any launch — a program.json rewritten to match kernels it was not compiled with is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.errors import TesseraError
from tessera.frontend.config import ModelSpec
from tessera.runtime.program_check import KERNEL_TABLE_SYMBOL, kernel_table_digest
from tessera.targets import toolchain
from tessera.targets.kernel_cache import KernelCache, cache_key
from tessera.targets.stages import lower_to_schedule, lower_to_tile, memory_report, stage_recorder

STAGES = ("graph", "schedule", "tile", "x86", "llvm", "so")
# Where each stage's text goes in OUT/x86/ (and, numbered by stage, in --dump-ir DIR).
STAGE_FILES = {"schedule": "schedule.mlir", "tile": "tile.mlir", "x86": "kernels.mlir", "llvm": "kernels.ll"}
# The ahead-of-time libraries an artifact carries, by the ISA level runtime/cpu_features.py chooses.
LIBRARY_FILES = {"generic": "kernels.so", "avx512": "kernels.avx512.so", "amx": "kernels.amx.so"}
# Bump when the kernel emitters or the pipeline change what a kernel's text compiles to.
CODEGEN_VERSION = "x86-1"


@dataclass
class Lowering:
    """What lower() produced: each stage's text, and what compile() builds on beyond the text."""

    texts: dict[str, str]
    tile_module: ModuleOp | None = None
    llvm_modules: list[str] = field(default_factory=list)  # one per kernel, as the kernel cache keys them
    program: dict[str, Any] | None = None  # program.json, made before the code it is bound to


class X86Backend:
    name = "x86"
    stages = STAGES

    def __init__(self, cache: KernelCache | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.cache = cache or KernelCache()
        self.progress = progress or (lambda message: None)

    def check(self, spec: ModelSpec) -> None:
        """Refuse, before any work, what this target cannot build."""
        if spec.compile.batch != 1:
            raise TesseraError(f"{spec.source}: field 'compile.batch': the x86 target runs one sequence (batch 1)")

    def lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> dict[str, str]:
        return self._lower(graph, spec, until, dump_dir).texts

    def _lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> Lowering:
        """Every stage up to `until`, stopping early for --emit; each stage's text dumped as it is made."""
        from tessera.lowering.convert_tile_to_x86 import emit_kernel, kernels, kernels_module, lower_programs

        self.check(spec)
        result = Lowering({})
        done = stage_recorder(result.texts, self.name, STAGES, STAGE_FILES, until, dump_dir)

        schedule_module = lower_to_schedule(graph, spec)
        if done("schedule", str(schedule_module) + "\n"):
            return result
        result.tile_module = lower_to_tile(schedule_module, spec, "x86")
        if done("tile", str(result.tile_module) + "\n"):
            return result
        functions = [emit_kernel(kernel) for kernel in kernels(result.tile_module)]
        if done("x86", kernels_module(functions)):
            return result
        result.llvm_modules = self.llvm_ir(functions)
        result.program = lower_programs(result.tile_module)
        done("llvm", toolchain.link_llvm_ir([*result.llvm_modules, kernel_table_ir(result.program)]))
        return result

    def llvm_ir(self, functions: list[str]) -> list[str]:
        """LLVM IR of each kernel (compiled as a module of its own, through the kernel cache)."""
        from tessera.lowering.convert_tile_to_x86 import kernels_module
        from tessera.lowering.x86.pipeline import LLVM_PIPELINE

        pieces = [kernels_module([function]) for function in functions]
        self.progress(f"x86: {len(pieces)} kernels through MLIR 22 to LLVM IR")

        def one(text: str) -> str:
            key = cache_key(CODEGEN_VERSION, "llvm-ir", LLVM_PIPELINE, text)
            return self.cache.get_or_build(
                "llvm", key, lambda: toolchain.mlir_to_llvm_ir(text, LLVM_PIPELINE).encode()
            ).decode()

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, pieces))

    def objects(self, llvm_ir_modules: list[str], cpu: toolchain.CPU) -> list[bytes]:
        def one(text: str) -> bytes:
            key = cache_key(CODEGEN_VERSION, "object", cpu.name, cpu.features, text)
            return self.cache.get_or_build("obj", key, lambda: toolchain.compile_object(text, cpu=cpu))

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, llvm_ir_modules))

    def amx_library(
        self, tile_module: ModuleOp, target_dir: Path, program: dict[str, Any], emulated: bool = False
    ) -> list[str]:
        """Every GEMM's AMX variant (`<name>__amx`, bf16 tiles) into kernels.amx.so, its MLIR beside it;
        built whatever the precision, so that the artifact runs its best on whichever CPU it meets; bound
        to `program`'s kernel table like the other libraries.
        emulated: the same kernels with the tile operations as loops, for this CPU (tests on machines
        without AMX run the whole AMX path through them)."""
        from tessera.lowering.convert_tile_to_x86 import amx_kernels, kernels_module
        from tessera.lowering.x86.pipeline import AMX_LLVM_PIPELINE

        variants = amx_kernels(tile_module, emulated)
        functions = list(variants.values())
        (target_dir / "kernels.amx.mlir").write_text(kernels_module(functions))

        def one(function: str) -> str:
            text = kernels_module([function])
            key = cache_key(CODEGEN_VERSION, "llvm-ir", AMX_LLVM_PIPELINE, text)
            return self.cache.get_or_build(
                "llvm", key, lambda: toolchain.mlir_to_llvm_ir(text, AMX_LLVM_PIPELINE).encode()
            ).decode()

        with ThreadPoolExecutor(max_workers=2) as pool:
            llvm_ir = list(pool.map(one, functions))
        cpu = toolchain.X86_64_BASELINE if emulated else toolchain.X86_64_AMX
        self.link_library(llvm_ir, program, cpu, target_dir / LIBRARY_FILES["amx"])
        return list(variants)

    def link_library(self, llvm_ir_modules: list[str], program: dict[str, Any], cpu: toolchain.CPU, path: Path) -> None:
        """The kernels' objects for `cpu` and the kernel-table digest of `program`, linked into one library.
        The digest's object is not cached: it takes milliseconds, and each program has its own."""
        table = toolchain.compile_object(kernel_table_ir(program), cpu=cpu)
        toolchain.link_shared([*self.objects(llvm_ir_modules, cpu), table], path)

    def compile(self, graph: ModuleOp, spec: ModelSpec, out_dir: Path, dump_dir: Path | None) -> dict[str, Any]:
        started = time.perf_counter()
        lowering = self._lower(graph, spec, "llvm", dump_dir)
        assert lowering.tile_module is not None and lowering.program is not None
        program = lowering.program
        target_dir = out_dir / self.name
        target_dir.mkdir(parents=True, exist_ok=True)
        for stage, name in STAGE_FILES.items():
            (target_dir / name).write_text(lowering.texts[stage])
        libraries = {}
        for isa, cpu in (("generic", toolchain.X86_64_BASELINE), ("avx512", toolchain.X86_64_AVX512)):
            self.progress(f"x86: machine code for {cpu.name} (ahead-of-time library, {isa})")
            libraries[isa] = f"{self.name}/{LIBRARY_FILES[isa]}"
            self.link_library(lowering.llvm_modules, program, cpu, out_dir / libraries[isa])
        self.progress(f"x86: AMX variants of the GEMMs for {toolchain.X86_64_AMX.name} (ahead-of-time library, amx)")
        amx_kernels = self.amx_library(lowering.tile_module, target_dir, program)
        libraries["amx"] = f"{self.name}/{LIBRARY_FILES['amx']}"
        (target_dir / "program.json").write_text(json.dumps(program, indent=1) + "\n")
        report = memory_report(lowering.tile_module, spec)
        seconds = time.perf_counter() - started
        self.progress(
            f"x86: {report['kernels']} kernels ({self.cache.hits} cached, {self.cache.misses} compiled) in {seconds:.1f} s; "
            f"state {report['state_bytes']} B + KV cache {report['kv_cache_bytes']} B per sequence"
        )
        return {
            "program": f"{self.name}/program.json",
            "llvm_ir": f"{self.name}/kernels.ll",
            "library": libraries["generic"],
            "library_cpu": toolchain.X86_64_BASELINE.name,
            "libraries": libraries,
            "amx_kernels": amx_kernels,
            "precision": spec.compile.effective_precision,
            "ssm_state_dtype": spec.compile.ssm_state_dtype,
            "kv_cache_dtype": spec.compile.kv_cache_dtype,
            "stages": list(STAGES),
            **report,
        }


def kernel_table_ir(program: dict[str, Any]) -> str:
    """An LLVM IR module exporting the digest of `program`'s kernel table as 64 ASCII hex digits, linked
    beside the kernels so that the runtime can tell which program.json the code was compiled with."""
    digest = kernel_table_digest(program["kernels"])
    return f'@{KERNEL_TABLE_SYMBOL} = constant [64 x i8] c"{digest}", align 1\n'

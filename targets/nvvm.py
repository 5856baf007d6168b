"""The NVVM target (NVIDIA Hopper, sm_90a): Graph-IR -> Schedule-IR -> Tile-IR tiled for sm_90a -> a gpu.module
of NVVM kernels (WGMMA + TMA + mbarrier for the bf16 projections, SIMT for the rest) -> LLVM IR -> PTX ->
cubin (ptxas) -> SASS (nvdisasm), all without a GPU.

Stages (each observable with `tessera-compile --emit=<stage>` and `--dump-ir DIR`):
    schedule   the same Schedule-IR as every target (targets/stages.py)
    tile       convert-tessera-schedule-to-tile, tessera-tile-choose-tiles{target=sm_90a}, footprints
    nvvm       convert-tessera-tile-to-nvvm: the kernels as gpu.func (lowering/convert_tile_to_nvvm.py)
    llvm       convert-gpu-to-nvvm, convert-nvvm-to-llvm (MLIR 22), mlir-translate: LLVM IR (nvptx64)
    ptx        LLVM's NVPTX back end (llvmlite): PTX for sm_90a, PTX ISA 8.0
    cubin      ptxas -arch=sm_90a -v (skipped, with a message, where ptxas is not installed: the driver then
               JIT-compiles kernels.ptx at load)

OUT/nvvm/ holds schedule.mlir, tile.mlir, kernels.mlir, kernels.ll, kernels.ptx, kernels.cubin, kernels.sass
(where nvdisasm or cuobjdump is installed) and program.json. The manifest's kernel_table gives, per kernel,
its launch geometry, static and dynamic shared bytes (checked against Tile-IR and the sm_90a limit),
registers, stack, spills (ptxas -v) and its HGMMA / UTMALDG counts (SASS).

The default precision of this target is bf16 (WGMMA on bf16 operands, f32 accumulation); --precision fp32
keeps float32 arithmetic (Hopper's only f32 tensor-core path is tf32, so f32 projections are SIMT FMA).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from tessera.arch import FAST_MEMORY_LIMITS
from tessera.errors import TesseraError
from tessera.frontend.config import ModelSpec
from tessera.targets import toolchain
from tessera.targets.kernel_cache import KernelCache, cache_key
from tessera.targets.stages import lower_to_schedule, lower_to_tile, memory_report, stage_recorder

STAGES = ("graph", "schedule", "tile", "nvvm", "llvm", "ptx")
STAGE_FILES = {
    "schedule": "schedule.mlir",
    "tile": "tile.mlir",
    "nvvm": "kernels.mlir",
    "llvm": "kernels.ll",
    "ptx": "kernels.ptx",
}
ARCHS = ("sm_90a",)
DEFAULT_ARCH = "sm_90a"
DEFAULT_PRECISION = "bf16"
# Bump when the kernel emitters or the pipeline change what a kernel's text compiles to.
CODEGEN_VERSION = "nvvm-1"


@dataclass
class Lowering:
    texts: dict[str, str]
    tile_module: ModuleOp | None = None
    kernels: list[Any] = field(default_factory=list)  # NvvmKernel, in Tile-IR order


def with_target_defaults(spec: ModelSpec) -> ModelSpec:
    """bf16 unless the model or the command line chose a precision."""
    if spec.compile.precision is not None:
        return spec
    return replace(spec, compile=replace(spec.compile, precision=DEFAULT_PRECISION))


class NvvmBackend:
    name = "nvvm"
    stages = STAGES

    def __init__(self, cache: KernelCache | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.cache = cache or KernelCache()
        self.progress = progress or (lambda message: None)

    def check(self, spec: ModelSpec) -> None:
        arch = spec.compile.arch or DEFAULT_ARCH
        if arch not in ARCHS:
            raise TesseraError(
                f"{spec.source}: field 'compile.arch': the nvvm target builds for {', '.join(ARCHS)}, not '{arch}'"
            )
        if spec.compile.batch != 1:
            raise TesseraError(f"{spec.source}: field 'compile.batch': the nvvm target runs one sequence (batch 1)")

    def lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> dict[str, str]:
        return self._lower(graph, spec, until, dump_dir).texts

    def _lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> Lowering:
        from tessera.lowering.convert_tile_to_nvvm import emit_kernels
        from tessera.lowering.nvvm.kernel_text import kernels_module

        self.check(spec)
        spec = with_target_defaults(spec)
        result = Lowering({})
        done = stage_recorder(result.texts, self.name, STAGES, STAGE_FILES, until, dump_dir)

        schedule_module = lower_to_schedule(graph, spec)
        if done("schedule", str(schedule_module) + "\n"):
            return result
        result.tile_module = lower_to_tile(schedule_module, spec, DEFAULT_ARCH)
        if done("tile", str(result.tile_module) + "\n"):
            return result
        result.kernels = emit_kernels(result.tile_module)
        if done("nvvm", kernels_module([kernel.text for kernel in result.kernels])):
            return result
        llvm_ir = toolchain.link_llvm_ir(self.llvm_ir([kernel.text for kernel in result.kernels]))
        if done("llvm", llvm_ir):
            return result
        done("ptx", self.ptx(llvm_ir))
        return result

    def llvm_ir(self, functions: list[str]) -> list[str]:
        """LLVM IR of each kernel (a gpu.module of its own), through the kernel cache."""
        from tessera.lowering.nvvm import pipeline
        from tessera.lowering.nvvm.kernel_text import kernels_module

        self.progress(f"nvvm: {len(functions)} kernels through MLIR 22 (convert-gpu-to-nvvm, sm_90a) to LLVM IR")

        def one(function: str) -> str:
            text = kernels_module([function])
            key = cache_key(CODEGEN_VERSION, "llvm-ir", pipeline.NVVM_PIPELINE, text)
            return self.cache.get_or_build("llvm", key, lambda: pipeline.to_llvm_ir(text).encode()).decode()

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, functions))

    def ptx(self, llvm_ir: str) -> str:
        from tessera.lowering.nvvm import pipeline

        self.progress("nvvm: PTX for sm_90a (llvmlite NVPTX)")
        key = cache_key(CODEGEN_VERSION, "ptx", pipeline.CHIP, pipeline.FEATURES, llvm_ir)
        return self.cache.get_or_build("ptx", key, lambda: pipeline.to_ptx(llvm_ir).encode()).decode()

    def compile(self, graph: ModuleOp, spec: ModelSpec, out_dir: Path, dump_dir: Path | None) -> dict[str, Any]:
        from tessera.lowering.convert_tile_to_nvvm import lower_programs
        from tessera.lowering.nvvm import pipeline

        started = time.perf_counter()
        lowering = self._lower(graph, spec, "ptx", dump_dir)
        spec = with_target_defaults(spec)
        assert lowering.tile_module is not None
        target_dir = out_dir / self.name
        target_dir.mkdir(parents=True, exist_ok=True)
        for stage, name in STAGE_FILES.items():
            (target_dir / name).write_text(lowering.texts[stage])
        code_object = "kernels.ptx"
        reports: dict[str, Any] = {}
        sass: str | None = None
        if pipeline.find_ptxas() is None:
            self.progress("nvvm: ptxas not installed: kernels.ptx written (the driver JIT-compiles it), no cubin")
        else:
            self.progress("nvvm: cubin (ptxas -arch=sm_90a -v)")
            cubin = pipeline.assemble(lowering.texts["ptx"])
            (target_dir / "kernels.cubin").write_bytes(cubin.data)
            code_object, reports = "kernels.cubin", cubin.kernels
            if pipeline.find_disassembler() is not None:
                sass = pipeline.disassemble(cubin.data)
                (target_dir / "kernels.sass").write_text(sass)
        program = lower_programs(lowering.tile_module, lowering.kernels)
        (target_dir / "program.json").write_text(json.dumps(program, indent=1) + "\n")
        report = memory_report(lowering.tile_module, spec)
        seconds = time.perf_counter() - started
        self.progress(f"nvvm: {report['kernels']} kernels for sm_90a ({self.cache.hits} cached) in {seconds:.1f} s")
        return {
            "arch": DEFAULT_ARCH,
            "program": f"{self.name}/program.json",
            "llvm_ir": f"{self.name}/kernels.ll",
            "ptx": f"{self.name}/kernels.ptx",
            "code_object": f"{self.name}/{code_object}",
            "sass": None if sass is None else f"{self.name}/kernels.sass",
            "precision": spec.compile.effective_precision,
            "ssm_state_dtype": spec.compile.ssm_state_dtype,
            "kv_cache_dtype": spec.compile.kv_cache_dtype,
            "stages": [*STAGES, *(["cubin"] if reports else [])],
            "kernel_table": kernel_table(lowering.kernels, reports, sass),
            **report,
        }


_SASS_FUNCTION = re.compile(r"^\s*\.text\.([\w$]+):", re.M)


def kernel_sass(sass: str) -> dict[str, str]:
    """nvdisasm's SASS split by kernel (each `.text.<name>:` section up to the next)."""
    marks = list(_SASS_FUNCTION.finditer(sass))
    return {
        mark.group(1): sass[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(sass)]
        for i, mark in enumerate(marks)
    }


def kernel_table(kernels: list[Any], reports: dict[str, Any], sass: str | None) -> dict[str, dict[str, Any]]:
    """Per kernel: launch geometry, shared memory (static + dynamic, within sm_90a's limit), ptxas's resource
    report (absent without ptxas) and the Hopper instructions in its SASS (absent without a disassembler)."""
    from tessera.lowering.nvvm.pipeline import sass_opcodes

    bodies = kernel_sass(sass) if sass is not None else {}
    limit = FAST_MEMORY_LIMITS[DEFAULT_ARCH]
    table: dict[str, dict[str, Any]] = {}
    for kernel in kernels:
        shared = kernel.kernel.lds_bytes + kernel.dynamic_shared_bytes
        if shared > limit:
            raise TesseraError(f"kernel {kernel.name}: {shared} bytes of shared memory, above sm_90a's {limit}")
        row: dict[str, Any] = {
            "threads": kernel.kernel.threads,
            "grid": kernel.kernel.grid.plain(),
            "static_shared_bytes": kernel.kernel.lds_bytes,
            "dynamic_shared_bytes": kernel.dynamic_shared_bytes,
            "tensor_maps": len(kernel.tensor_maps),
            "wgmma": kernel.uses_wgmma,
        }
        found = reports.get(kernel.name)
        if found is not None:
            row |= {
                "registers": found.registers,
                "stack_bytes": found.stack_frame,
                "spills": found.spill_stores + found.spill_loads,
            }
        if kernel.name in bodies:
            opcodes = sass_opcodes(bodies[kernel.name])
            row |= {"hgmma": opcodes.get("HGMMA", 0), "utmaldg": opcodes.get("UTMALDG", 0)}
        table[kernel.name] = row
    return table

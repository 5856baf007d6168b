"""The ROCDL target (AMD CDNA: gfx942 = MI300, gfx90a = MI200): Graph-IR -> Schedule-IR -> Tile-IR tiled for
the arch -> a gpu.module of ROCDL kernels (MFMA + LDS) -> LLVM IR -> AMDGCN assembly and object -> .hsaco.

Stages (each observable with `tessera-compile --emit=<stage>` and `--dump-ir DIR`):
    schedule   the same Schedule-IR as every target (targets/stages.py)
    tile       convert-tessera-schedule-to-tile, tessera-tile-choose-tiles{target=<arch>}, footprints
    rocdl      convert-tessera-tile-to-rocdl: the kernels as gpu.func (lowering/convert_tile_to_rocdl.py)
    llvm       convert-gpu-to-rocdl (MLIR 22), mlir-translate: LLVM IR, triple amdgcn-amd-amdhsa
    amdgcn     llvmlite's AMDGPU back end: assembly + relocatable object
    hsaco      ld.lld: the loadable code object (skipped, with a message, where ld.lld is not installed)

OUT/rocdl/ holds schedule.mlir, tile.mlir, kernels.mlir, kernels.ll, kernels.s, kernels.o, kernels.hsaco and
program.json. Every kernel's LDS bytes are read back from its kernel descriptor in kernels.o and must equal
its Tile-IR footprint; registers and spills come from the assembly. All of it is in the manifest.
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
from tessera.targets import toolchain
from tessera.targets.kernel_cache import KernelCache, cache_key
from tessera.targets.stages import lower_to_schedule, lower_to_tile, memory_report, stage_recorder

STAGES = ("graph", "schedule", "tile", "rocdl", "llvm", "amdgcn", "hsaco")
STAGE_FILES = {
    "schedule": "schedule.mlir",
    "tile": "tile.mlir",
    "rocdl": "kernels.mlir",
    "llvm": "kernels.ll",
    "amdgcn": "kernels.s",
}
ARCHS = ("gfx942", "gfx90a")
DEFAULT_ARCH = "gfx942"
# Bump when the kernel emitters or the pipeline change what a kernel's text compiles to.
CODEGEN_VERSION = "rocdl-1"


@dataclass
class Lowering:
    texts: dict[str, str]
    tile_module: ModuleOp | None = None
    kernels: list[Any] = field(default_factory=list)  # GpuKernel, in Tile-IR order
    object: bytes = b""


class RocdlBackend:
    name = "rocdl"
    stages = STAGES

    def __init__(self, cache: KernelCache | None = None, progress: Callable[[str], None] | None = None) -> None:
        self.cache = cache or KernelCache()
        self.progress = progress or (lambda message: None)

    @staticmethod
    def arch(spec: ModelSpec) -> str:
        return spec.compile.arch or DEFAULT_ARCH

    def check(self, spec: ModelSpec) -> None:
        arch = self.arch(spec)
        if arch not in ARCHS:
            raise TesseraError(
                f"{spec.source}: field 'compile.arch': the rocdl target builds for {', '.join(ARCHS)}, not '{arch}'"
            )
        if spec.compile.batch != 1:
            raise TesseraError(f"{spec.source}: field 'compile.batch': the rocdl target runs one sequence (batch 1)")

    def lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> dict[str, str]:
        return self._lower(graph, spec, until, dump_dir).texts

    def _lower(self, graph: ModuleOp, spec: ModelSpec, until: str, dump_dir: Path | None) -> Lowering:
        from tessera.lowering.convert_tile_to_rocdl import emit_kernels
        from tessera.lowering.rocdl.kernel_text import kernels_module

        self.check(spec)
        arch = self.arch(spec)
        result = Lowering({})
        done = stage_recorder(result.texts, self.name, STAGES, STAGE_FILES, until, dump_dir)

        schedule_module = lower_to_schedule(graph, spec)
        if done("schedule", str(schedule_module) + "\n"):
            return result
        result.tile_module = lower_to_tile(schedule_module, spec, arch)
        if done("tile", str(result.tile_module) + "\n"):
            return result
        result.kernels = emit_kernels(result.tile_module)
        if done("rocdl", kernels_module([kernel.text for kernel in result.kernels])):
            return result
        llvm_ir = toolchain.link_llvm_ir(self.llvm_ir([kernel.text for kernel in result.kernels], arch))
        if done("llvm", llvm_ir):
            return result
        assembly, result.object = self.machine_code(llvm_ir, arch)
        done("amdgcn", assembly)
        return result

    def llvm_ir(self, functions: list[str], arch: str) -> list[str]:
        """LLVM IR of each kernel (a gpu.module of its own), through the kernel cache."""
        from tessera.lowering.rocdl import pipeline
        from tessera.lowering.rocdl.kernel_text import kernels_module

        self.progress(f"rocdl: {len(functions)} kernels through MLIR 22 (convert-gpu-to-rocdl, {arch}) to LLVM IR")

        def one(function: str) -> str:
            text = kernels_module([function])
            key = cache_key(CODEGEN_VERSION, "llvm-ir", pipeline.rocdl_pipeline(arch), text)
            return self.cache.get_or_build("llvm", key, lambda: pipeline.to_llvm_ir(text, arch).encode()).decode()

        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, functions))

    def machine_code(self, llvm_ir: str, arch: str) -> tuple[str, bytes]:
        """AMDGCN assembly and relocatable object of all kernels (one module: one metadata note)."""
        from tessera.lowering.rocdl import pipeline

        self.progress(f"rocdl: AMDGCN for {arch} (llvmlite)")
        key = cache_key(CODEGEN_VERSION, "amdgcn", arch, llvm_ir)
        built: list[pipeline.MachineCode] = []

        def compiled() -> pipeline.MachineCode:
            if not built:
                built.append(pipeline.to_machine_code(llvm_ir, arch))
            return built[0]

        obj = self.cache.get_or_build("obj", key, lambda: compiled().object)
        assembly = self.cache.get_or_build("asm", key, lambda: compiled().assembly.encode()).decode()
        return assembly, obj

    def compile(self, graph: ModuleOp, spec: ModelSpec, out_dir: Path, dump_dir: Path | None) -> dict[str, Any]:
        from tessera.lowering.convert_tile_to_rocdl import lower_programs

        started = time.perf_counter()
        arch = self.arch(spec)
        lowering = self._lower(graph, spec, "amdgcn", dump_dir)
        assert lowering.tile_module is not None
        target_dir = out_dir / self.name
        target_dir.mkdir(parents=True, exist_ok=True)
        for stage, name in STAGE_FILES.items():
            (target_dir / name).write_text(lowering.texts[stage])
        (target_dir / "kernels.o").write_bytes(lowering.object)
        kernels = self.kernel_report(lowering)
        code_object: str | None = "kernels.hsaco"
        if toolchain.find_lld() is None:
            self.progress("rocdl: ld.lld not installed (make install-lld): kernels.o written, no kernels.hsaco")
            code_object = None
        else:
            toolchain.link_hsaco([lowering.object], target_dir / "kernels.hsaco")
        program = lower_programs(lowering.tile_module, lowering.kernels)
        (target_dir / "program.json").write_text(json.dumps(program, indent=1) + "\n")
        report = memory_report(lowering.tile_module, spec)
        seconds = time.perf_counter() - started
        self.progress(f"rocdl: {report['kernels']} kernels for {arch} ({self.cache.hits} cached) in {seconds:.1f} s")
        return {
            "arch": arch,
            "program": f"{self.name}/program.json",
            "llvm_ir": f"{self.name}/kernels.ll",
            "assembly": f"{self.name}/kernels.s",
            "object": f"{self.name}/kernels.o",
            "code_object": None if code_object is None else f"{self.name}/{code_object}",
            "precision": spec.compile.effective_precision,
            "ssm_state_dtype": spec.compile.ssm_state_dtype,
            "kv_cache_dtype": spec.compile.kv_cache_dtype,
            "stages": list(STAGES),
            "kernel_table": kernels,
            **report,
        }

    def kernel_report(self, lowering: Lowering) -> dict[str, dict[str, Any]]:
        """Per kernel: launch geometry, LDS (Tile-IR and descriptor, which must agree), registers, spills."""
        from tessera.lowering.rocdl import pipeline

        descriptors = pipeline.kernel_descriptors(lowering.object)
        registers = pipeline.register_usage(lowering.texts["amdgcn"])
        bodies = pipeline.kernel_assembly(lowering.texts["amdgcn"])
        table: dict[str, dict[str, Any]] = {}
        for kernel in lowering.kernels:
            descriptor = descriptors.get(kernel.name)
            if descriptor is None or descriptor.group_segment_fixed_size != kernel.lds_bytes:
                found = "no descriptor" if descriptor is None else f"{descriptor.group_segment_fixed_size} bytes"
                raise TesseraError(
                    f"kernel {kernel.name}: LDS {kernel.lds_bytes} bytes planned, descriptor says {found}"
                )
            usage = registers[kernel.name]
            table[kernel.name] = {
                "threads": kernel.threads,
                "grid": kernel.grid.plain(),
                "lds_bytes": kernel.lds_bytes,
                "scratch_bytes": descriptor.private_segment_fixed_size,
                "vgprs": usage.vgprs,
                "agprs": usage.agprs,
                "sgprs": usage.sgprs,
                "spills": usage.vgpr_spills + usage.sgpr_spills,
                "mfma": bodies.get(kernel.name, "").count("v_mfma"),
            }
        return table

"""The NVVM target (NVIDIA Hopper, sm_90a): Graph-IR -> Schedule-IR -> Tile-IR tiled for sm_90a -> a gpu.module
of NVVM kernels (WGMMA + TMA + mbarrier for the bf16 projections, SIMT for the rest) -> LLVM IR -> PTX ->
cubin (ptxas) -> SASS (nvdisasm), all without a GPU.

Stages (NvvmBackend.stages, run by targets/compiler.py; each observable with `tessera-compile --emit=<stage>`
and `--dump-ir DIR`):
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

import re
from dataclasses import dataclass, field, replace
from typing import Any

from tessera import toolchain
from tessera.errors import TesseraError
from tessera.model.config import ModelSpec
from tessera.targets.backend import Backend, Job, Stage, in_workers
from tessera.targets.stages import SCHEDULE, TILE

DEFAULT_PRECISION = "bf16"


@dataclass
class NvvmJob(Job):
    kernels: list[Any] = field(default_factory=list)  # NvvmKernel, in Tile-IR order
    modules: list[str] = field(default_factory=list)  # each kernel's LLVM IR, in the same order
    reports: dict[str, Any] = field(default_factory=dict)  # ptxas -v, by kernel (empty without ptxas)
    sass: str | None = None  # kernels.sass (None without nvdisasm or cuobjdump)


def kernels_mlir(job: NvvmJob) -> str:
    """convert-tessera-tile-to-nvvm: every kernel as a gpu.func of one gpu.module."""
    from tessera.lowering.convert_tile_to_nvvm import emit_printed_kernel
    from tessera.lowering.gpu.kernel import kernels_module
    from tessera.lowering.gpu.kernel_info import tile_kernels

    assert job.tile_module is not None
    # Each kernel's lowering (Python: the SIMT patterns) in the compile workers, a printed kernel each.
    kernels = [str(kernel) for kernel in tile_kernels(job.tile_module)]
    job.kernels = in_workers("nvvm kernels", emit_printed_kernel, kernels)
    return kernels_module([kernel.kernel for kernel in job.kernels])


def llvm_ir(job: NvvmJob) -> str:
    """LLVM IR of each kernel (a gpu.module of its own, the unit the kernel cache keys), linked."""
    from tessera.lowering.nvvm import pipeline

    job.progress(f"nvvm: {len(job.kernels)} kernels through MLIR 22 (convert-gpu-to-nvvm, {job.arch}) to LLVM IR")
    pieces = [kernel.text for kernel in job.kernels]
    job.modules = job.compile_texts("llvm", ("llvm-ir", pipeline.NVVM_PIPELINE), pieces, pipeline.to_llvm_ir)
    return toolchain.link_llvm_ir(job.modules)


def ptx(job: NvvmJob) -> str:
    """Each kernel's PTX in the compile workers (LLVM's NVPTX back end is one thread a module), joined."""
    from tessera.lowering.nvvm import pipeline

    job.progress(f"nvvm: PTX for {job.arch} (llvmlite NVPTX)")
    parts = ("ptx", pipeline.CHIP, pipeline.FEATURES)
    return pipeline.join_ptx(job.compile_texts("ptx", parts, job.modules, pipeline.to_ptx))


def cubin(job: NvvmJob) -> None:
    """kernels.cubin and ptxas's resource report; kernels.sass where a disassembler is installed."""
    from tessera.lowering.nvvm import pipeline

    job.progress(f"nvvm: cubin (ptxas -arch={job.arch} -v)")
    assembled = pipeline.assemble(job.texts["ptx"])
    job.write("kernels.cubin", assembled.data)
    job.reports = assembled.kernels
    if pipeline.find_disassembler() is not None:
        job.sass = pipeline.disassemble(assembled.data)
        job.write("kernels.sass", job.sass)


def _without_ptxas() -> str | None:
    from tessera.lowering.nvvm import pipeline

    if pipeline.find_ptxas() is not None:
        return None
    return "ptxas not installed: kernels.ptx written (the driver JIT-compiles it), no cubin"


class NvvmBackend(Backend[NvvmJob]):
    name = "nvvm"
    job_type = NvvmJob
    archs = ("sm_90a",)
    stages = (
        SCHEDULE,
        TILE,
        Stage("nvvm", "kernels.mlir", kernels_mlir),
        Stage("llvm", "kernels.ll", llvm_ir),
        Stage("ptx", "kernels.ptx", ptx),
        Stage("cubin", None, cubin, unavailable=_without_ptxas),
    )
    codegen_version = "nvvm-2"

    def configure(self, spec: ModelSpec) -> ModelSpec:
        """bf16 unless the model or the command line chose a precision."""
        if spec.compile.precision is not None:
            return spec
        return replace(spec, compile=replace(spec.compile, precision=DEFAULT_PRECISION))

    def program(self, job: NvvmJob) -> dict[str, Any]:
        from tessera.lowering.convert_tile_to_nvvm import lower_programs

        assert job.tile_module is not None
        return lower_programs(job.tile_module, job.kernels)

    def manifest(self, job: NvvmJob) -> dict[str, Any]:
        return {
            "arch": job.arch,
            "program": f"{self.name}/program.json",
            "llvm_ir": self.file("llvm"),
            "ptx": self.file("ptx"),
            "code_object": f"{self.name}/kernels.cubin" if "cubin" in job.ran else self.file("ptx"),
            "sass": None if job.sass is None else f"{self.name}/kernels.sass",
            **self.common_fields(job),
            "kernel_table": kernel_table(job.kernels, job.reports, job.sass, job.arch),
        }


_SASS_FUNCTION = re.compile(r"^\s*\.text\.([\w$]+):", re.M)


def kernel_sass(sass: str) -> dict[str, str]:
    """nvdisasm's SASS split by kernel (each `.text.<name>:` section up to the next)."""
    marks = list(_SASS_FUNCTION.finditer(sass))
    return {
        mark.group(1): sass[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(sass)]
        for i, mark in enumerate(marks)
    }


def kernel_table(kernels: list[Any], reports: dict[str, Any], sass: str | None, arch: str) -> dict[str, dict[str, Any]]:
    """Per kernel: launch geometry, shared memory (static + dynamic, within sm_90a's limit), ptxas's resource
    report (absent without ptxas) and the Hopper instructions in its SASS (absent without a disassembler)."""
    from tessera.arch import FAST_MEMORY_LIMITS
    from tessera.lowering.nvvm.pipeline import sass_opcodes

    bodies = kernel_sass(sass) if sass is not None else {}
    limit = FAST_MEMORY_LIMITS[arch]
    table: dict[str, dict[str, Any]] = {}
    for kernel in kernels:
        shared = kernel.kernel.lds_bytes + kernel.dynamic_shared_bytes
        if shared > limit:
            raise TesseraError(f"kernel {kernel.name}: {shared} bytes of shared memory, above {arch}'s {limit}")
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

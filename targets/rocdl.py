"""The ROCDL target (AMD CDNA: gfx942 = MI300, gfx90a = MI200): Graph-IR -> Schedule-IR -> Tile-IR tiled for
the arch -> a gpu.module of ROCDL kernels (MFMA + LDS) -> LLVM IR -> AMDGCN assembly and object -> .hsaco.

Stages (RocdlBackend.stages, run by targets/compiler.py; each observable with `tessera-compile --emit=<stage>`
and `--dump-ir DIR`):
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

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tessera import toolchain
from tessera.errors import TesseraError
from tessera.targets.backend import Backend, Job, Stage, in_workers
from tessera.targets.stages import SCHEDULE, TILE


@dataclass
class RocdlJob(Job):
    kernels: list[Any] = field(default_factory=list)  # GpuKernel, in Tile-IR order
    object: bytes = b""  # kernels.o


def kernels_mlir(job: RocdlJob) -> str:
    """convert-tessera-tile-to-rocdl: every kernel as a gpu.func of one gpu.module."""
    from tessera.lowering.convert_tile_to_rocdl import emit_printed_kernel
    from tessera.lowering.gpu.kernel import kernels_module
    from tessera.lowering.gpu.kernel_info import tile_kernels

    assert job.tile_module is not None
    # Each kernel's lowering (Python: the SIMT patterns) in the compile workers, a printed kernel each.
    kernels = [str(kernel) for kernel in tile_kernels(job.tile_module)]
    job.kernels = in_workers("rocdl kernels", emit_printed_kernel, kernels)
    return kernels_module(job.kernels)


def llvm_ir(job: RocdlJob) -> str:
    """LLVM IR of each kernel (a gpu.module of its own, the unit the kernel cache keys), linked."""
    from tessera.lowering.rocdl import pipeline

    job.progress(f"rocdl: {len(job.kernels)} kernels through MLIR 22 (convert-gpu-to-rocdl, {job.arch}) to LLVM IR")
    pieces = [kernel.text for kernel in job.kernels]
    modules = job.compile_texts(
        "llvm", ("llvm-ir", pipeline.rocdl_pipeline(job.arch)), pieces, partial(pipeline.to_llvm_ir, chip=job.arch)
    )
    return toolchain.link_llvm_ir(modules)


def machine_code(job: RocdlJob) -> str:
    """AMDGCN assembly (the stage's text) and relocatable object (kernels.o) of all kernels at once: one
    module, one metadata note; the two code generations side by side in the compile's workers."""
    from tessera.lowering.rocdl import pipeline

    job.progress(f"rocdl: AMDGCN for {job.arch} (llvmlite)")
    llvm_ir = job.texts["llvm"]
    build = partial(pipeline.machine_code_part, llvm_ir=llvm_ir, chip=job.arch)
    assembly, job.object = job.compile_each("amdgcn", (job.arch, llvm_ir), ["asm", "obj"], build)
    job.write("kernels.o", job.object)
    return assembly.decode()


def code_object(job: RocdlJob) -> None:
    toolchain.link_hsaco([job.object], job.path("kernels.hsaco"))


def _without_lld() -> str | None:
    if toolchain.find_lld() is not None:
        return None
    return "ld.lld not installed (make install-lld): kernels.o written, no kernels.hsaco"


class RocdlBackend(Backend[RocdlJob]):
    name = "rocdl"
    job_type = RocdlJob
    archs = ("gfx942", "gfx90a")
    stages = (
        SCHEDULE,
        TILE,
        Stage("rocdl", "kernels.mlir", kernels_mlir),
        Stage("llvm", "kernels.ll", llvm_ir),
        Stage("amdgcn", "kernels.s", machine_code),
        Stage("hsaco", None, code_object, unavailable=_without_lld),
    )
    codegen_version = "rocdl-1"

    def program(self, job: RocdlJob) -> dict[str, Any]:
        from tessera.lowering.convert_tile_to_rocdl import lower_programs

        assert job.tile_module is not None
        return lower_programs(job.tile_module, job.kernels)

    def manifest(self, job: RocdlJob) -> dict[str, Any]:
        return {
            "arch": job.arch,
            "program": f"{self.name}/program.json",
            "llvm_ir": self.file("llvm"),
            "assembly": self.file("amdgcn"),
            "object": f"{self.name}/kernels.o",
            "code_object": f"{self.name}/kernels.hsaco" if "hsaco" in job.ran else None,
            **self.common_fields(job),
            "kernel_table": kernel_report(job),
        }


def kernel_report(job: RocdlJob) -> dict[str, dict[str, Any]]:
    """Per kernel: launch geometry, LDS (Tile-IR and descriptor, which must agree), registers, spills."""
    from tessera.lowering.rocdl import pipeline

    descriptors = pipeline.kernel_descriptors(job.object)
    registers = pipeline.register_usage(job.texts["amdgcn"])
    bodies = pipeline.kernel_assembly(job.texts["amdgcn"])
    table: dict[str, dict[str, Any]] = {}
    for kernel in job.kernels:
        descriptor = descriptors.get(kernel.name)
        if descriptor is None or descriptor.group_segment_fixed_size != kernel.lds_bytes:
            found = "no descriptor" if descriptor is None else f"{descriptor.group_segment_fixed_size} bytes"
            raise TesseraError(f"kernel {kernel.name}: LDS {kernel.lds_bytes} bytes planned, descriptor says {found}")
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

"""The x86 target: Graph-IR -> Schedule-IR -> Tile-IR -> upstream MLIR kernels -> LLVM IR -> x86-64 code.

Stages (X86Backend.stages, run by targets/compiler.py; each observable with `tessera-compile --emit=<stage>`
and `--dump-ir DIR`):
    schedule   convert-tessera-graph-to-schedule, tessera-schedule-plan-buffers
    tile       convert-tessera-schedule-to-tile, tessera-tile-choose-tiles{target=x86},
               tessera-tile-compute-footprint
    x86        the kernels in upstream MLIR (func, scf, arith, memref, vector, math)
    llvm       MLIR 22's conversions to the llvm dialect, mlir-translate: LLVM IR — the kernels, each with its
               launch entry, and the native programs (tessera_prefill / tessera_decode, plain and
               instrumented: lowering/x86/native_program.py, MLIR's OpenMP lowering)
    so         ahead-of-time shared libraries: the x86-64 baseline, x86-64-v4 and the kernels' variants
               (AMX, AVX-512 BF16, AVX2) (llvmlite + the C compiler driver; the first two with the native
               programs, linked against libiomp5)

OUT/x86/ holds kernels.ll (the runtime JIT-compiles it for the exact host CPU when llvmlite is present),
kernels.so, kernels.avx512.so (loaded where it is not), kernels.amx.so, kernels.avx512bf16.so and
kernels.avx2.so (the variants), program.json (the launch lists, weights, state), programs.mlir (the native
programs in the llvm and omp dialects) and the IR of every stage. Each kernel is compiled separately through the on-disk kernel cache, so identical kernels — across
layers, models and runs — compile once.

Every library and kernels.ll also define `tessera_program_sha256`: the digest of program.json's
`kernels` table and launch lists (native_program.program_digest), which the runtime compares with the
program.json it reads before any launch — one rewritten to match code it was not compiled with is refused.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tessera import toolchain
from tessera.targets.backend import Backend, Job, Stage
from tessera.targets.stages import SCHEDULE, TILE

# The ahead-of-time libraries an artifact carries, by the ISA level runtime/cpu_features.py chooses.
LIBRARY_FILES = {
    "generic": "kernels.so",
    "avx512": "kernels.avx512.so",
    "amx": "kernels.amx.so",
    "avx512bf16": "kernels.avx512bf16.so",
    "avx2": "kernels.avx2.so",
}


@dataclass
class X86Job(Job):
    functions: list[str] = field(default_factory=list)  # one function per kernel, in Tile-IR order
    llvm_modules: list[str] = field(default_factory=list)  # one per kernel, as the kernel cache keys them
    variant_kernels: dict[str, list[str]] = field(default_factory=dict)  # by variant: the kernels it has
    programs_ir: str = ""  # LLVM IR of the native programs and the program digest


def kernels_mlir(job: X86Job) -> str:
    """convert-tessera-tile-to-x86: every kernel as an upstream func.func (func, scf, arith, memref, vector)."""
    from tessera.lowering.convert_tile_to_x86 import emit_kernel, kernels, kernels_module, parameter_names

    assert job.tile_module is not None
    found = kernels(job.tile_module)
    job.functions = [emit_kernel(kernel) for kernel in found]
    return kernels_module(job.functions, {kernel.sym_name.data: parameter_names(kernel) for kernel in found})


def llvm_ir(job: X86Job) -> str:
    """Each kernel through MLIR 22 to LLVM IR as a module of its own (the unit the kernel cache keys), then
    linked with the native programs, made here from program.json's launch lists, and their digest: the
    code is bound to the program.json written beside it."""
    from tessera.lowering.convert_tile_to_x86 import lower_programs
    from tessera.lowering.x86.native_program import entries_module, to_llvm_ir
    from tessera.lowering.x86.pipeline import LLVM_PIPELINE

    assert job.tile_module is not None
    job.progress(f"x86: {len(job.functions)} kernels through MLIR 22 to LLVM IR")
    job.llvm_modules = _llvm_ir(job, job.functions, LLVM_PIPELINE)
    job.program = lower_programs(job.tile_module)
    job.progress("x86: the native programs (MLIR's OpenMP lowering)")
    entries = entries_module(job.program)
    job.write("programs.mlir", entries)
    job.programs_ir = to_llvm_ir(entries)
    return toolchain.link_llvm_ir([*job.llvm_modules, job.programs_ir])


def libraries(job: X86Job) -> None:
    """The ahead-of-time libraries: the x86-64 baseline, x86-64-v4 (AVX-512), and the kernels' variants (AMX
    tiles, AVX-512 BF16 dot products, AVX2 register blocks)."""
    from tessera.lowering.convert_tile_to_x86 import MATRIX_VARIANTS

    assert job.program is not None
    # The programs only sequence calls and fork: one object for every library (the baseline, O1), cached.
    programs_object = job.compile_one(
        "obj", ("programs", "O1", job.programs_ir), lambda: toolchain.compile_object(job.programs_ir, opt=1)
    )
    for isa, cpu in (("generic", toolchain.X86_64_BASELINE), ("avx512", toolchain.X86_64_AVX512)):
        job.progress(f"x86: machine code for {cpu.name} (ahead-of-time library, {isa})")
        link_library(job, job.llvm_modules, cpu, LIBRARY_FILES[isa], programs_object, programs=True)
    for isa in MATRIX_VARIANTS:
        job.progress(f"x86: {isa} variants (ahead-of-time library, {isa})")
        job.variant_kernels[isa] = variant_library(job, isa)


def variant_library(job: X86Job, isa: str, emulated: bool = False) -> list[str]:
    """Every `isa` variant (`<name>__<isa>`: the GEMMs'; for AMX a bf16 artifact's SSD scans too, for AVX2 every
    kernel of AVX2_KINDS) into kernels.<isa>.so, its MLIR beside it; built whatever the precision, so that the
    artifact runs its best on whichever CPU it meets; bound to job.program's digest like the other libraries.
    Returns the kernels that have a variant. emulated (AMX): the same
    kernels with the tile operations as loops, for this CPU (tests on machines without AMX run the whole
    AMX path through them)."""
    from tessera.lowering.convert_tile_to_x86 import (
        matrix_variant,
        matrix_variant_pieces,
        variants_by_name,
        variants_module,
    )
    from tessera.lowering.x86.native_program import digest_llvm_ir
    from tessera.lowering.x86.pipeline import VARIANT_PIPELINES

    assert job.tile_module is not None
    # Each GEMM's variant lowered in the worker processes, through the kernel cache.
    pieces = matrix_variant_pieces(job.tile_module, isa, emulated)
    parts = ("variant", isa, lowering_fingerprint())
    variants = variants_by_name(job.compile_texts("tile-variant", parts, pieces, matrix_variant))
    if not variants:  # (an fp32 model has no GEMM that dot products take): no library
        return []
    functions = [text for text, _ in variants.values()]
    job.write(f"kernels.{isa}.mlir", variants_module(isa, variants))
    cpu = toolchain.X86_64_BASELINE if emulated else toolchain.VARIANT_CPUS[isa]
    assert job.program is not None
    digest = toolchain.compile_object(digest_llvm_ir(job.program), cpu=cpu)  # (variants: no programs)
    link_library(job, _llvm_ir(job, functions, VARIANT_PIPELINES[isa]), cpu, LIBRARY_FILES[isa], digest)
    return list(variants)


@functools.cache
def lowering_fingerprint() -> str:
    """SHA-256 of the Python that turns Tile-IR kernels into upstream MLIR (kernels/, lowering/, tiling/,
    dialects/, arch.py): part of the key of whatever the kernel cache keeps of Tessera's own lowering, so that
    a change to it never reuses what the old code made."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in [
        root / "arch.py",
        *(p for d in ("kernels", "lowering", "tiling", "dialects") for p in sorted((root / d).rglob("*.py"))),
    ]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _llvm_ir(job: X86Job, functions: list[str], pipeline: str) -> list[str]:
    """LLVM IR of each function, compiled as a module of its own (MLIR reads a lone function as one) through
    the kernel cache."""
    from tessera.lowering.x86.native_program import ABI_VERSION
    from tessera.lowering.x86.pipeline import kernel_llvm_ir

    return job.compile_texts(
        "llvm", ("llvm-ir", pipeline, ABI_VERSION), functions, partial(kernel_llvm_ir, pipeline=pipeline)
    )


def link_library(job: X86Job, llvm_ir_modules: list[str], cpu: toolchain.CPU, name: str, own: bytes,
                 programs: bool = False) -> None:  # fmt: skip
    """The kernels' objects for `cpu` (through the kernel cache) and the library's own object — the native
    programs (`programs`: then linked against libiomp5) or the program digest alone — into OUT/x86/<name>."""
    from tessera.runtime.openmp import library_path

    objects = job.compile_each(
        "obj", ("object", cpu.name, cpu.features), llvm_ir_modules, partial(toolchain.compile_object, cpu=cpu)
    )
    toolchain.link_shared([*objects, own], job.path(name), [str(library_path())] if programs else [])


class X86Backend(Backend[X86Job]):
    name = "x86"
    job_type = X86Job
    stages = (
        SCHEDULE,
        TILE,
        Stage("x86", "kernels.mlir", kernels_mlir),
        Stage("llvm", "kernels.ll", llvm_ir),
        Stage("so", None, libraries),
    )
    codegen_version = "x86-1"

    def manifest(self, job: X86Job) -> dict[str, Any]:
        built = {"generic", "avx512", *(isa for isa, names in job.variant_kernels.items() if names)}
        libraries = {isa: f"{self.name}/{name}" for isa, name in LIBRARY_FILES.items() if isa in built}
        return {
            "program": f"{self.name}/program.json",
            "llvm_ir": self.file("llvm"),
            "library": libraries["generic"],
            "library_cpu": toolchain.X86_64_BASELINE.name,
            "libraries": libraries,
            **{f"{isa}_kernels": names for isa, names in job.variant_kernels.items()},
            **self.common_fields(job),
        }

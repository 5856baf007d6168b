"""NVVM kernels (a gpu.module) -> LLVM IR -> PTX -> cubin -> SASS, all without a GPU:

    to_llvm_ir     upstream MLIR 22: convert-scf-to-cf, convert-gpu-to-nvvm (index 32-bit),
                   convert-nvvm-to-llvm (wgmma / mbarrier ops become inline PTX), reconcile casts; then
                   the tensor-map parameters are marked by value and grid constant (GRID_CONSTANTS
                   says why) and the GPU module is translated (toolchain.gpu_module_to_llvm_ir)
    to_ptx         LLVM's NVPTX back end through llvmlite, sm_90a, +ptx80 (PTX ISA 8.0)
    assemble       ptxas -arch=sm_90a -v: the cubin, and registers / stack / spills / barriers per kernel
    disassemble    nvdisasm (or cuobjdump -sass): the SASS, where HGMMA and UTMALDG show

ptxas comes with CUDA (/usr/local/bin here); nvdisasm and cuobjdump from PyPI's nvidia-cuda-nvdisasm and
nvidia-cuda-cuobjdump (13.5.37 checked), which put them in site-packages/nvidia/cu13/bin.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tessera import toolchain
from tessera.toolchain import ToolchainError

TRIPLE = "nvptx64-nvidia-cuda"
CHIP = "sm_90a"
FEATURES = "+ptx80"
TENSOR_MAP_BYTES = 128
TENSOR_MAP_ALIGNMENT = 64
# The GPU function's attribute naming the CUtensorMap parameters (lowering/tile_to_simt.py LowerKernel): MLIR 22's
# verifier allows the grid-constant attribute only on an LLVM function kernel and the GPU function lowering drops
# the by-value one, so they are marked once the kernel is an LLVM function, and reach PTX as
# `.param .align 64 .b8 [128]`.
GRID_CONSTANTS = "tessera.grid_constants"

# The one dynamic shared allocation TMA kernels address (lowering/nvvm/wgmma.py), declared once per GPU module:
# external, of 0 bytes (a launch gives its size), 1024-aligned (the 128-byte swizzle repeats every 8 rows).
DYNAMIC_SHARED = "tessera_dynamic_smem"
SHARED_ALIGNMENT = 1024

NVVM_PIPELINE = ",".join(
    [
        "gpu.module(canonicalize, convert-scf-to-cf, convert-gpu-to-nvvm{index-bitwidth=32}, "
        "convert-nvvm-to-llvm, canonicalize)",
        "reconcile-unrealized-casts",
    ]
)


def to_llvm_ir(kernels_mlir: str) -> str:
    """A module holding one gpu.module of NVVM kernels -> the LLVM IR of its kernels (nvptx64-nvidia-cuda)."""
    if "llvm.data_layout" not in kernels_mlir:
        raise ToolchainError("the GPU module has no data layout (lower kernels for sm_90a: arch.data_layout)")
    lowered = toolchain.run_pipeline(kernels_mlir, NVVM_PIPELINE)
    lowered = toolchain.mark_by_value_parameters(lowered, GRID_CONSTANTS, TENSOR_MAP_BYTES, TENSOR_MAP_ALIGNMENT)
    return toolchain.gpu_module_to_llvm_ir(lowered, "reconcile-unrealized-casts", TRIPLE)


def to_ptx(llvm_ir: str) -> str:
    """LLVM IR -> PTX for sm_90a at O3 (PTX ISA 8.0)."""
    return toolchain.gpu_assembly(llvm_ir, TRIPLE, CHIP, FEATURES)


def join_ptx(modules: list[str]) -> str:
    """The PTX of several modules as one (what ptxas and the driver load): the shared header (.version,
    .target, .address_size) once, then every module's declarations and kernels in order. A declaration two
    modules share (the dynamic shared memory's extern) may repeat; ptxas refuses any other name defined twice."""
    header, bodies = None, []
    for module in modules:
        head, marker, body = module.partition("\n.address_size ")
        size, _, rest = body.partition("\n")
        if not marker or (header is not None and header != head + marker + size):
            raise ToolchainError("PTX modules to join must each start with the same .version / .target / .address_size")
        header = head + marker + size
        bodies.append(rest)
    return "".join([header or "", "\n", *bodies])


# --- CUDA's tools ------------------------------------------------------------------------------------------

# ptxas compiles the kernels of one PTX on this many threads (-split-compile: the same machine code, 0.74 s ->
# 0.46 s for Nano-12B's on 2 cores); fixed, because the cubin records its command line and should not depend on
# the host's CPU count.
PTXAS_THREADS = 4
_PTXAS_CANDIDATES = ("ptxas", "/usr/local/bin/ptxas", "/usr/local/cuda/bin/ptxas")


def _find(tool: str, candidates: tuple[str, ...] = ()) -> str | None:
    """A CUDA tool: on PATH, at a known place, or in PyPI's nvidia-cuda-<tool> package (nvidia/cu13/bin)."""
    for candidate in (tool, *candidates):
        found = shutil.which(candidate)
        if found is not None:
            return found
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        for path in sorted(Path(root).glob(f"cu*/bin/{tool}"), reverse=True):
            if path.is_file():
                return str(path)
    return None


def find_ptxas() -> str | None:
    return _find("ptxas", _PTXAS_CANDIDATES)


def find_disassembler() -> str | None:
    """nvdisasm, else cuobjdump (either reads a cubin's SASS)."""
    return _find("nvdisasm") or _find("cuobjdump")


@dataclass(frozen=True)
class PtxasReport:
    """What `ptxas -v` says of one kernel."""

    registers: int
    stack_frame: int  # bytes
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    barriers: int
    shared_bytes: int  # static shared memory only (the GEMM's is dynamic: 0 here)


@dataclass(frozen=True)
class Cubin:
    data: bytes
    kernels: dict[str, PtxasReport]
    log: str  # ptxas's whole stderr (info lines and any warnings)


def assemble(ptx: str, name: str = "kernels") -> Cubin:
    """PTX -> an sm_90a cubin with ptxas -v, and its per-kernel resource report."""
    ptxas = find_ptxas()
    if ptxas is None:
        raise ToolchainError(
            f"{name}: ptxas not found (looked on PATH and at {', '.join(_PTXAS_CANDIDATES[1:])}); "
            "install CUDA 13 (a ptxas with -split-compile) to assemble sm_90a cubins"
        )
    with tempfile.TemporaryDirectory() as scratch:
        source, cubin = Path(scratch) / f"{name}.ptx", Path(scratch) / f"{name}.cubin"
        source.write_text(ptx)
        result = subprocess.run(
            [ptxas, f"-arch={CHIP}", "-v", "-split-compile", str(PTXAS_THREADS), str(source), "-o", str(cubin)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
            raise ToolchainError(
                f"ptxas failed on {name}: {(errors or result.stderr.splitlines() or ['?'])[0].strip()}"
            )
        return Cubin(cubin.read_bytes(), parse_ptxas_report(result.stderr), result.stderr)


def parse_ptxas_report(log: str) -> dict[str, PtxasReport]:
    """Per-kernel numbers from ptxas -v's stderr ("Compiling entry function 'k'", "Function properties for
    k", "N bytes stack frame, N bytes spill stores, N bytes spill loads", "Used N registers, ...")."""
    reports: dict[str, PtxasReport] = {}
    for block in re.split(r"Compiling entry function ", log)[1:]:
        name = block.split("'")[1]

        def number(pattern: str, text: str = block) -> int:
            found = re.search(pattern, text)
            return int(found.group(1)) if found else 0

        reports[name] = PtxasReport(
            registers=number(r"Used (\d+) registers"),
            stack_frame=number(r"(\d+) bytes stack frame"),
            spill_stores=number(r"(\d+) bytes spill stores"),
            spill_loads=number(r"(\d+) bytes spill loads"),
            barriers=number(r"used (\d+) barriers"),
            shared_bytes=number(r"(\d+) bytes smem"),
        )
    return reports


def disassemble(cubin: bytes, name: str = "kernels") -> str:
    """A cubin's SASS (nvdisasm, or cuobjdump -sass)."""
    tool = find_disassembler()
    if tool is None:
        raise ToolchainError(
            f"{name}: nvdisasm / cuobjdump not found; pip install nvidia-cuda-nvdisasm "
            "(or nvidia-cuda-cuobjdump), or put CUDA's bin on PATH"
        )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{name}.cubin"
        path.write_bytes(cubin)
        command = [tool, str(path)] if Path(tool).name == "nvdisasm" else [tool, "-sass", str(path)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
            raise ToolchainError(f"{Path(tool).name} failed on {name}: {first}")
        return result.stdout


_SASS_INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(?:\.[\w.]*)?[\s;]")


def sass_opcodes(sass: str) -> Counter[str]:
    """How many times each opcode (without its modifiers: HGMMA, UTMALDG, ...) appears in SASS text."""
    return Counter(_SASS_INSTRUCTION.findall(sass))


@dataclass(frozen=True)
class Artifacts:
    """Every stage of one gpu.module's compilation."""

    llvm_ir: str
    ptx: str
    cubin: Cubin
    sass: str | None  # None where no disassembler is installed


def compile_kernels(kernels_mlir: str, name: str = "kernels", sass: bool = True) -> Artifacts:
    llvm_ir = to_llvm_ir(kernels_mlir)
    ptx = to_ptx(llvm_ir)
    cubin = assemble(ptx, name)
    text = disassemble(cubin.data, name) if sass and find_disassembler() is not None else None
    return Artifacts(llvm_ir, ptx, cubin, text)


if __name__ == "__main__":  # gpu.module text on stdin -> LLVM IR (--llvm), PTX (default) or SASS (--sass)
    import argparse
    import sys

    from tessera.errors import TesseraError

    parser = argparse.ArgumentParser(prog="python -m tessera.lowering.nvvm.pipeline")
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--llvm", action="store_true", help="stop at LLVM IR")
    stage.add_argument("--sass", action="store_true", help="assemble with ptxas -v and disassemble")
    options = parser.parse_args()
    try:
        llvm_ir = to_llvm_ir(sys.stdin.read())
        if options.llvm:
            sys.stdout.write(llvm_ir)
        elif options.sass:
            cubin = assemble(to_ptx(llvm_ir))
            sys.stderr.write(cubin.log)
            sys.stdout.write(disassemble(cubin.data))
        else:
            sys.stdout.write(to_ptx(llvm_ir))
    except TesseraError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        sys.exit(1)

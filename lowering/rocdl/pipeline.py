"""ROCDL kernels (a gpu.module) -> AMDGCN: upstream MLIR 22 `convert-gpu-to-rocdl`, LLVM IR, then llvmlite's
AMDGPU back end for the assembly (.s) and the relocatable object (.o) of each kernel, and `ld.lld` for the
loadable HSA code object (.hsaco) where it is installed.

What the kernel descriptor says is read back from the object (`kernel_descriptors`): the LDS bytes
(`group_segment_fixed_size`), scratch bytes and kernel-argument bytes, so the compiler can check them
against Tile-IR's footprint; registers and spills come from the assembly's metadata (`register_usage`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from io import BytesIO

from tessera import toolchain

TRIPLE = "amdgcn-amd-amdhsa"


def rocdl_pipeline(chip: str) -> str:
    """gpu.module kernels (scf/arith/math/vector/memref + rocdl) -> the llvm dialect, for one chip."""
    return ",".join(
        [
            "gpu.module(canonicalize, convert-scf-to-cf, "
            f"convert-gpu-to-rocdl{{chipset={chip} index-bitwidth=32 runtime=HIP}}, canonicalize)",
            f"rocdl-attach-target{{chip={chip}}}",
            "reconcile-unrealized-casts",
        ]
    )


def to_llvm_ir(kernels_mlir: str, chip: str) -> str:
    """A module holding one gpu.module -> the LLVM IR of its kernels (triple amdgcn-amd-amdhsa)."""
    return toolchain.gpu_module_to_llvm_ir(kernels_mlir, rocdl_pipeline(chip), TRIPLE)


@dataclass(frozen=True)
class MachineCode:
    assembly: str
    object: bytes


def to_machine_code(llvm_ir: str, chip: str) -> MachineCode:
    assembly, obj = toolchain.compile_gpu(llvm_ir, TRIPLE, chip)
    return MachineCode(assembly, obj)


def machine_code_part(part: str, llvm_ir: str, chip: str) -> bytes:
    """One half of to_machine_code, "asm" (the assembly, encoded) or "obj": each a code generation of its own,
    so that a compile runs the two at once in its workers."""
    if part == "asm":
        return toolchain.gpu_assembly(llvm_ir, TRIPLE, chip).encode()
    assert part == "obj", part
    return toolchain.gpu_object(llvm_ir, TRIPLE, chip)


@dataclass(frozen=True)
class KernelDescriptor:
    """The fields of an AMDHSA kernel descriptor (`<kernel>.kd`, 64 bytes) that Tessera checks."""

    group_segment_fixed_size: int  # LDS bytes
    private_segment_fixed_size: int  # scratch bytes per lane (spills, stack)
    kernarg_size: int


def kernel_descriptors(obj: bytes) -> dict[str, KernelDescriptor]:
    """Every kernel descriptor in an AMDGPU object or code object, by kernel name."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    elf = ELFFile(BytesIO(obj))
    found: dict[str, KernelDescriptor] = {}
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for symbol in section.iter_symbols():
            if not symbol.name.endswith(".kd") or symbol["st_size"] != 64:
                continue
            holder = elf.get_section(symbol["st_shndx"])
            start = symbol["st_value"] - (holder["sh_addr"] if elf["e_type"] == "ET_DYN" else 0)
            raw = holder.data()[start : start + 12]
            group, private, kernarg = struct.unpack("<III", raw)
            found[symbol.name[: -len(".kd")]] = KernelDescriptor(group, private, kernarg)
    return found


@dataclass(frozen=True)
class RegisterUsage:
    vgprs: int
    agprs: int
    sgprs: int
    vgpr_spills: int
    sgpr_spills: int


def register_usage(assembly: str) -> dict[str, RegisterUsage]:
    """Registers and spills of each kernel, from the amdhsa.kernels metadata in its assembly."""
    usage: dict[str, RegisterUsage] = {}
    for entry in re.split(r"\n\s*- \.", assembly.split("amdhsa.kernels:", 1)[-1]):
        fields = dict(re.findall(r"\.([a-z_]+):\s+(\S+)", "." + entry))
        if "name" in fields and "vgpr_count" in fields:
            usage[fields["name"]] = RegisterUsage(
                vgprs=int(fields["vgpr_count"]),
                agprs=int(fields.get("agpr_count", 0)),
                sgprs=int(fields.get("sgpr_count", 0)),
                vgpr_spills=int(fields.get("vgpr_spill_count", 0)),
                sgpr_spills=int(fields.get("sgpr_spill_count", 0)),
            )
    return usage


def kernel_assembly(assembly: str) -> dict[str, str]:
    """Each kernel's instructions (from its label to its end label), by kernel name."""
    bodies: dict[str, str] = {}
    for match in re.finditer(r"^([A-Za-z_][\w.]*):\s*(?:;.*)?\n(.*?)^\.Lfunc_end\d+:", assembly, re.M | re.S):
        bodies[match.group(1)] = match.group(2)
    return bodies


if __name__ == "__main__":  # gpu.module text on stdin -> LLVM IR (--llvm) or AMDGCN assembly (default)
    import argparse
    import sys

    from tessera.errors import TesseraError

    parser = argparse.ArgumentParser(prog="python -m tessera.lowering.rocdl.pipeline")
    parser.add_argument("chip", choices=("gfx942", "gfx90a"))
    parser.add_argument("--llvm", action="store_true", help="stop at LLVM IR")
    options = parser.parse_args()
    try:
        llvm_ir = to_llvm_ir(sys.stdin.read(), options.chip)
        sys.stdout.write(llvm_ir if options.llvm else to_machine_code(llvm_ir, options.chip).assembly)
    except TesseraError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        sys.exit(1)

"""Which x86 kernel variant this CPU runs: the features Linux reports, AMX tile-data permission, the choice.

An x86 artifact carries builds of its kernels (targets/x86.py): `generic` (the x86-64 baseline), `avx512`
(x86-64-v4) and, for the GEMMs, three variants: `amx` (bf16 AMX tiles, Sapphire Rapids and later; a bf16
artifact's SSD scans too), `avx512bf16` (vdpbf16ps dot products: Cooper Lake, Zen 4 and later) and `avx2`
(x86-64-v3: register blocks for 16 ymm registers, any precision; the MoE experts, SSD scans and attention
too). The choice is made once per session, here, from /proc/cpuinfo — not
from the compiler's machine, and without llvmlite, so that an artifact built on one machine runs on another
with numpy, ctypes and libiomp5 alone:

    GEMMs            when the precision in effect is bf16 (the matrix variants multiply bf16 only): amx where
                     the CPU lists amx_tile and amx_bf16 and Linux grants tile data (arch_prctl), else
                     avx512bf16 where it lists avx512_bf16; else avx2 where it lists avx2 and fma but not
                     AVX-512; else as below
    every kernel     avx512 when the CPU lists avx512f/bw/vl/dq/cd; else generic

TESSERA_ISA=amx|avx512bf16|avx512|avx2|generic forces a choice (refused, in one line, when the CPU cannot run
it).
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from tessera.errors import TesseraError

ISAS = ("amx", "avx512bf16", "avx512", "avx2", "generic")
MATRIX_VARIANTS = ("amx", "avx512bf16", "avx2")  # the GEMM variants, best first
AVX2 = frozenset({"avx2", "fma"})
AVX512 = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"})
AMX = frozenset({"amx_tile", "amx_bf16"})
AVX512_BF16 = AVX512 | {"avx512_bf16"}
# Linux x86-64: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) asks for the AMX tile-data state
# (arch/x86/include/uapi/asm/prctl.h); without it the first tile instruction faults.
_SYS_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


class IsaError(TesseraError):
    """A kernel variant forced on a CPU that cannot run it."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU Linux lists (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def request_amx_permission() -> bool:
    """Ask Linux for AMX tile data for this process; False where it is refused or not Linux x86-64."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)) == 0


@dataclass(frozen=True)
class IsaChoice:
    matrix: str  # the variant of the GEMMs (a matrix variant, avx2, or the level of every other kernel)
    other: str  # the variant of every other kernel
    why: str  # one line: why


def choose_isa(precision: str, flags: frozenset[str] | None = None, forced: str | None = None) -> IsaChoice:
    """The variants a session runs. `precision` is the artifact's (fp32 | bf16); `flags` default to this
    CPU's; `forced` (default $TESSERA_ISA) names one variant for everything it applies to."""
    flags = cpu_flags() if flags is None else flags
    forced = forced if forced is not None else os.environ.get("TESSERA_ISA") or None
    has_avx512 = AVX512 <= flags
    other = "avx512" if has_avx512 else "generic"
    if forced is not None:
        if forced not in ISAS:
            raise IsaError(f"TESSERA_ISA must be one of {', '.join(ISAS)}, got '{forced}'")
        if forced == "generic":
            return IsaChoice("generic", "generic", "forced by TESSERA_ISA")
        if forced == "avx2":
            if not AVX2 <= flags:
                raise IsaError(f"TESSERA_ISA=avx2: this CPU has no AVX2 and FMA (flags lack {sorted(AVX2 - flags)})")
            return IsaChoice("avx2", other, "forced by TESSERA_ISA")
        if not has_avx512:
            raise IsaError(f"TESSERA_ISA={forced}: this CPU has no AVX-512 (flags lack {sorted(AVX512 - flags)})")
        if forced == "avx512":
            return IsaChoice("avx512", "avx512", "forced by TESSERA_ISA")
    if precision != "bf16":
        reason = "the matrix variants multiply bf16 only; this artifact is fp32"
        if forced is not None:
            raise IsaError(f"TESSERA_ISA={forced}: {reason} (compile with --precision bf16)")
        return _vector_gemms(flags, other, reason)
    if forced == "avx512bf16":
        if not AVX512_BF16 <= flags:
            raise IsaError(
                f"TESSERA_ISA=avx512bf16: this CPU has no AVX-512 BF16 (flags lack {sorted(AVX512_BF16 - flags)})"
            )
        return IsaChoice("avx512bf16", other, "forced by TESSERA_ISA")
    refused = ""
    if AMX <= flags:
        if request_amx_permission():
            return IsaChoice("amx", other, "bf16 artifact, AMX granted")
        refused = "Linux refused AMX tile data"
    if forced == "amx":
        raise IsaError(f"TESSERA_ISA=amx: {refused or f'this CPU has no AMX (flags lack {sorted(AMX - flags)})'}")
    if AVX512_BF16 <= flags:
        return IsaChoice("avx512bf16", other, f"bf16 artifact, AVX-512 BF16{', ' + refused if refused else ', no AMX'}")
    return _vector_gemms(flags, other, refused or "no AMX or AVX-512 BF16 on this CPU")


def _vector_gemms(flags: frozenset[str], other: str, why: str) -> IsaChoice:
    """No matrix variant: the GEMMs' avx2 variant on a CPU with AVX2 and FMA but no AVX-512 (the vector
    kernels' register blocks are sized for 32 zmm registers), else every kernel's own level."""
    if other == "generic" and AVX2 <= flags:
        return IsaChoice("avx2", other, f"{why}; AVX2 without AVX-512")
    return IsaChoice(other, other, why)

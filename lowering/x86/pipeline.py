"""The upstream MLIR 22 pass pipeline that takes x86 kernels (func/scf/arith/memref/vector/math) to the
llvm dialect, and a helper that builds a loadable library from kernel text (tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path

# Vector transfers and contractions are lowered before SCF so that their loops become plain cf branches;
# the vector lowering keeps 512-bit operations whole so that LLVM picks AVX-512 where the CPU has it.
LLVM_PIPELINE = ",".join(
    [
        "canonicalize",
        "lower-affine",
        "convert-vector-to-scf{full-unroll=true}",
        "convert-scf-to-cf",
        "canonicalize",
        "convert-vector-to-llvm",
        "convert-math-to-llvm",
        "expand-strided-metadata",
        "lower-affine",
        "finalize-memref-to-llvm",
        "convert-arith-to-llvm",
        "convert-index-to-llvm",
        "convert-func-to-llvm",
        "convert-cf-to-llvm",
        "reconcile-unrealized-casts",
    ]
)


def build_library(kernels_mlir: str, path: Path, host: bool = True):  # type: ignore[no-untyped-def]
    """Kernel MLIR text -> a shared library at `path` (for the host CPU, or the x86-64 baseline)."""
    from tessera.runtime.native import KernelLibrary
    from tessera.targets import toolchain

    llvm_ir = toolchain.mlir_to_llvm_ir(kernels_mlir, LLVM_PIPELINE)
    cpu = toolchain.host_cpu() if host else toolchain.X86_64_BASELINE
    return KernelLibrary(toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=cpu)], path))


if __name__ == "__main__":  # kernels MLIR on stdin -> LLVM IR on stdout (lit tests pipe tessera-opt into it)
    import sys

    from tessera.errors import TesseraError
    from tessera.lowering.x86.amx import AMX_LLVM_PIPELINE
    from tessera.targets import toolchain

    # --amx: the AMX variants (tessera-opt -t x86-amx-mlir)
    pipeline = AMX_LLVM_PIPELINE if sys.argv[1:] == ["--amx"] else LLVM_PIPELINE
    try:
        sys.stdout.write(toolchain.mlir_to_llvm_ir(sys.stdin.read(), pipeline))
    except TesseraError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        sys.exit(1)

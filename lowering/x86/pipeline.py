"""The upstream MLIR 22 pass pipeline that takes x86 kernels (func/scf/arith/memref/vector/math) to the
llvm dialect, the kernels' LLVM IR with their launch entries, and a helper that builds a loadable library
from kernel text (tests, benchmarks)."""

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
        # the element-by-element transfers of a column (vector-to-scf) start from ub.poison vectors
        "convert-ub-to-llvm",
        "reconcile-unrealized-casts",
    ]
)


# LLVM_PIPELINE's passes that the AMX lowering replaces: `enable-amx` for the vector conversion, and
# convert-to-llvm for convert-cf-to-llvm, whose type converter knows no !amx.tile: the accumulators that a
# K loop carries become cf block arguments of that type, and convert-to-llvm takes the AMX dialect's type
# conversion from its ConvertToLLVM interface.
_AMX_PASSES = {"convert-vector-to-llvm": "convert-vector-to-llvm{enable-amx}", "convert-cf-to-llvm": "convert-to-llvm"}


def _amx_pipeline(pipeline: str) -> str:
    passes = pipeline.split(",")
    for old, new in _AMX_PASSES.items():
        if old not in passes:
            raise AssertionError(f"LLVM_PIPELINE has no '{old}' pass to replace for AMX")
        passes[passes.index(old)] = new
    return ",".join(passes)


# The AMX GEMM variants (convert-tessera-tile-to-x86{amx=true}: lowering/tile_to_amx.py).
AMX_LLVM_PIPELINE = _amx_pipeline(LLVM_PIPELINE)
# The AVX-512 BF16 GEMM variants (convert-tessera-tile-to-x86{bf16_dot=true}: x86vector dot products).
AVX512BF16_LLVM_PIPELINE = LLVM_PIPELINE.replace("convert-vector-to-llvm,", "convert-vector-to-llvm{enable-x86vector},")
VARIANT_PIPELINES = {"amx": AMX_LLVM_PIPELINE, "avx512bf16": AVX512BF16_LLVM_PIPELINE, "avx2": LLVM_PIPELINE}


def kernel_llvm_ir(text: str, pipeline: str) -> str:
    """Kernels (MLIR) through `pipeline` to the llvm dialect, each given its launch entry
    (`<kernel>__launch`, the native programs' calling convention: native_program.py), then LLVM IR."""
    from tessera import toolchain
    from tessera.lowering.x86.native_program import add_launch_entries

    return toolchain.mlir_to_llvm_ir(text, pipeline, add_launch_entries)


def build_library(kernels_mlir: str, path: Path, host: bool = True):  # type: ignore[no-untyped-def]
    """Kernel MLIR text -> a shared library at `path` (for the host CPU, or the x86-64 baseline)."""
    from tessera import toolchain
    from tessera.runtime.native import KernelLibrary

    llvm_ir = toolchain.mlir_to_llvm_ir(kernels_mlir, LLVM_PIPELINE)
    cpu = toolchain.host_cpu() if host else toolchain.X86_64_BASELINE
    return KernelLibrary(toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=cpu)], path))


if __name__ == "__main__":  # kernels MLIR on stdin -> LLVM IR on stdout (lit tests pipe tessera-opt into it)
    import sys

    from tessera import toolchain
    from tessera.errors import TesseraError

    # --amx / --avx512bf16: those variants (tessera-opt -t x86-amx-mlir / -t x86-avx512bf16-mlir)
    flags = [arg.removeprefix("--") for arg in sys.argv[1:]]
    pipeline = VARIANT_PIPELINES[flags[0]] if flags and flags[0] in VARIANT_PIPELINES else LLVM_PIPELINE
    try:
        sys.stdout.write(toolchain.mlir_to_llvm_ir(sys.stdin.read(), pipeline))
    except TesseraError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        sys.exit(1)

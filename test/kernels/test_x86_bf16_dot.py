"""The AVX-512 BF16 GEMM variant (kernels/gemm.py's vector blocking with k in pairs, through
convert-tessera-tile-to-x86{bf16_dot=true}: LowerMmaBF16Dot): its machine code (vdpbf16ps, no widening) and,
where this CPU has AVX-512 BF16, its numbers against float64 on bf16-rounded operands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from test_x86_gemm import assert_close, finish_case
from xdsl.dialects.builtin import ModuleOp

from tessera import toolchain
from tessera.dialects.upstream import upstream_text
from tessera.lowering.convert_tile_to_x86 import bf16_dot_kernel, kernels_module
from tessera.lowering.expand_math import expand_math
from tessera.lowering.tile_to_x86 import lower_to_x86
from tessera.lowering.x86.pipeline import AVX512BF16_LLVM_PIPELINE
from tessera.runtime.cpu_features import AVX512_BF16, cpu_flags
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_bits, bf16_to_f32, pack_pair_panels
from tessera.tiling.x86_gemm import GemmSpec, choose_tiles, panel_count

HAS_DOT = AVX512_BF16 <= cpu_flags()
# Odd N (masked last columns), K a multiple of 4 or only of 2 (the unrolled loop's pair tail), every
# epilogue, bias and row scale, a bf16 y, K past one K block (two blocks with a shorter last one).
SPECS = {
    "odd_store": GemmSpec(301, 72, "store", weight_dtype="bf16", x_dtype="bf16"),
    "k_tail_accumulate_scaled_bias": GemmSpec(
        131, 98, "accumulate", bias=True, row_scale=True, weight_dtype="bf16", x_dtype="bf16"
    ),
    "relu2_y16": GemmSpec(83, 64, "relu2", row_scale=True, weight_dtype="bf16", x_dtype="bf16", y_dtype="bf16"),
    "two_k_blocks": GemmSpec(70, 1500, "accumulate", weight_dtype="bf16", x_dtype="bf16"),
}
ROWS = (1, 7, 37)


def _text(name: str, spec: GemmSpec) -> str:
    kernel = bf16_dot_kernel(name, spec, choose_tiles(spec))
    assert kernel is not None
    module = ModuleOp([kernel])
    lower_to_x86(module, bf16_dot=True)
    expand_math(module, "x86")
    return upstream_text(module.body.block.first_op)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def objects() -> bytes:
    llvm_ir = toolchain.mlir_to_llvm_ir(kernels_module([_text(name, spec) for name, spec in SPECS.items()]),
                                        AVX512BF16_LLVM_PIPELINE)  # fmt: skip
    return toolchain.compile_object(llvm_ir, cpu=toolchain.X86_64_AVX512_BF16)


def test_products_are_dot_products(objects: bytes, tmp_path: Path) -> None:
    import subprocess

    from tessera.toolchain import _site_file

    (tmp_path / "k.o").write_bytes(objects)
    listing = subprocess.run([str(_site_file("llvm", "bin", "llvm-objdump")), "-d", str(tmp_path / "k.o")],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert listing.count("vdpbf16ps") >= 24 * len(SPECS)  # the 6 x 64 register block: 24 per pair step


@pytest.mark.skipif(not HAS_DOT, reason="this CPU has no AVX-512 BF16 (avx512_bf16): the code cannot run here")
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("name", SPECS)
def test_matches_float64(objects: bytes, tmp_path: Path, rng: np.random.Generator, name: str, rows: int) -> None:
    library = KernelLibrary(toolchain.link_shared([objects], tmp_path / "dot.so"))
    spec = SPECS[name]
    x_bits = bf16_bits(rng.standard_normal((rows, spec.k), dtype=np.float32))
    weight = rng.standard_normal((spec.n, spec.k), dtype=np.float32)
    expected = bf16_to_f32(x_bits).astype(np.float64) @ bf16_to_f32(bf16_bits(weight)).astype(np.float64).T
    case = finish_case(spec, rng, [x_bits, pack_pair_panels(weight, choose_tiles(spec).nr)], expected)
    library.kernel(f"{name}__avx512bf16")(*case.args, case.y, 0, panel_count(spec, choose_tiles(spec)))
    assert_close(case.y, case.expected)


def test_pair_panels_are_the_kernels_layout(rng: np.random.Generator) -> None:
    weight = rng.standard_normal((70, 10), dtype=np.float32)
    packed = pack_pair_panels(weight, 64)
    assert packed.shape == (2, 5, 128) and packed.dtype == np.uint16 and packed.ctypes.data % 64 == 0
    bits = bf16_bits(weight)
    for p, i, j, t in ((0, 0, 0, 0), (0, 4, 63, 1), (1, 2, 5, 0), (1, 3, 5, 1)):
        assert packed[p, i, 2 * j + t] == bits[64 * p + j, 2 * i + t]
    assert not packed[1, :, 2 * 6 :].any()  # columns past N are zero
    odd_k = GemmSpec(64, 45, "store", weight_dtype="bf16", x_dtype="bf16")
    assert bf16_dot_kernel("g", odd_k, choose_tiles(odd_k)) is None  # odd K: no variant

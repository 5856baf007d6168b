"""The MLIR 22 / LLVM toolchain: a hand-written MLIR kernel lowered to x86-64 machine code and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from tessera import toolchain
from tessera.runtime.native import KernelLibrary, NativeError

KERNEL = Path(__file__).parent / "inputs" / "rmsnorm_kernel.mlir"
PIPELINE = ",".join(
    [
        "convert-scf-to-cf",
        "convert-math-to-llvm",
        "expand-strided-metadata",
        "finalize-memref-to-llvm",
        "convert-arith-to-llvm",
        "convert-func-to-llvm",
        "convert-cf-to-llvm",
        "reconcile-unrealized-casts",
    ]
)


@pytest.mark.parametrize("cpu", ["baseline", "host"])
def test_rmsnorm_kernel_runs_as_machine_code(rng: np.random.Generator, cpu: str, tmp_path: Path) -> None:
    llvm_ir = toolchain.mlir_to_llvm_ir(KERNEL.read_text(), PIPELINE)
    assert "define void @rmsnorm(" in llvm_ir
    target = toolchain.X86_64_BASELINE if cpu == "baseline" else toolchain.host_cpu()
    library = KernelLibrary(toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=target)], tmp_path / "k.so"))
    rows = int(rng.integers(1, 9))
    x = rng.standard_normal((rows, 72)).astype(np.float32)
    weight = rng.standard_normal(72).astype(np.float32)
    out = np.full_like(x, np.nan)
    library.kernel("rmsnorm")(x, weight, out, rows)
    x64 = x.astype(np.float64)
    expected = x64 / np.sqrt((x64 * x64).mean(axis=1, keepdims=True) + 1e-5) * weight
    assert np.isfinite(out).all()
    assert np.abs(out - expected).max() / np.abs(expected).max() < 1e-6
    with pytest.raises(NativeError, match="no kernel 'rmsnorm_v2'"):
        library.kernel("rmsnorm_v2")


def test_toolchain_errors_are_one_line() -> None:
    with pytest.raises(toolchain.ToolchainError, match="MLIR pipeline failed") as info:
        toolchain.run_pipeline("func.func @f( {", "convert-func-to-llvm")
    assert "\n" not in str(info.value) and "expected non-function type" in str(info.value)
    with pytest.raises(toolchain.ToolchainError, match="invalid LLVM IR"):
        toolchain.compile_object("define void @f( {")

"""tessera-expand-math's typed expansions (lowering/math/) over test_nvvm_math.py's dense f32 sweep (every
exponent, both signs, +-0, +-inf, NaN; test_nvvm_math.py checks the sm_90a ones against their bounds):

    sm_90a  no math op is left for the GPU toolchain (no libdevice call in the PTX)
    x86     exp on vector<16xf32> and f32: the x86 target's lowering of kernels/ (convert-tessera-tile-to-x86,
            tessera-expand-math), built to machine code for the host CPU and for the x86-64 baseline (no
            FMA), is within the bound lowering/math/exp.py derives, 0 at and below CEPHES_LOW, +inf above
            CEPHES_HIGH, NaN for NaN (the text version it ported went with the last x86 emitter using it)
    x86     log on vector<16xf32>: the bits of the sm_90a log (the same IEEE ops) in either build
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from test_nvvm_math import MANTISSAS, float32_sweep, run_probe, ulp
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    DictionaryAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    VectorType,
    f32,
    i1,
    i32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.utils.exceptions import VerifyException

from tessera.arch import gpu_arch
from tessera.dialects import tile, upstream
from tessera.kernels.builder import KernelBuilder
from tessera.lowering.convert_tile_to_x86 import emit_kernel, kernels_module
from tessera.lowering.gpu.dataflow import lower_dataflow_kernel
from tessera.lowering.math.exp import CEPHES_HIGH, CEPHES_LOW

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")

LOG = logging.getLogger(__name__)

FUNCTIONS: dict[str, Callable[[SSAValue], Operation]] = {
    "exp": math.ExpOp,
    "log": math.LogOp,
    "sqrt": math.SqrtOp,
    "rsqrt": math.RsqrtOp,
}
WARP = 32  # an sm_90a program: one element per lane
VECTOR = 16  # an x86 program: one vector<16xf32>
# Cephes' exp bound (lowering/math/exp.py) without FMA, which also holds with it (1.03): the host CPU may lack it.
CEPHES_BOUND = 1.08


def probe(function: str, target: str, width: int | None) -> tile.KernelOp:
    """A dataflow kernel y[t] = function(x[t]): row t a tile of `width` elements, or (None) one element."""
    shape = [DYNAMIC_INDEX] if width is None else [DYNAMIC_INDEX, width]
    k = KernelBuilder({"x": MemRefType(f32, shape), "y": MemRefType(f32, shape)})
    x, y = k.buffers
    apply = FUNCTIONS[function]
    # KernelBuilder has methods for exp and sqrt only: the element ops are inserted as it inserts its own.
    if width is None:
        k.store(k._insert(apply(k.load(x, [k.program_id]))), y, [k.program_id])
    else:
        at = [k.program_id, k.index(0)]
        k.store(k.map([k.load(x, at, [width])], lambda e, v: e._insert(apply(v))), y, at)
    properties: dict[str, Attribute] = {
        "sym_name": StringAttr(f"typed_{function}_{width or 1}"),
        "kind": StringAttr("probe"),
        "dims": DictionaryAttr({}),
        "parallel": StringAttr("tokens"),
        "grid": IntegerAttr(0, i64),
        "target": StringAttr(target),
        "tiles": DictionaryAttr({}),  # none to choose: the probe is written for one tile size
    }
    return tile.KernelOp(properties=properties, regions=[Region(k.finish())])


def padded_sweep(multiple: int) -> np.ndarray:
    """test_nvvm_math's sweep, padded with 1.0 to a whole number of rows."""
    x = float32_sweep(MANTISSAS)
    return np.concatenate([x, np.ones(-x.size % multiple, np.float32)])


def same_bits(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Where two f32 arrays hold the same bits, any NaN matching any NaN."""
    return (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))


def assert_same_bits(what: str, x: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    wrong = ~same_bits(got, want)
    assert not wrong.any(), f"{what}: {wrong.sum()} inputs differ, e.g. {x[wrong][:4]} -> {got[wrong][:4]}, want {want[wrong][:4]}"  # fmt: skip


def assert_within(what: str, x: np.ndarray, got: np.ndarray, want: np.ndarray, bound: float) -> float:
    """|got - want| in ulps of want's f32 binade at most `bound`; returns the worst."""
    errors = np.abs(got.astype(np.float64) - want) / ulp(want)
    worst = int(np.argmax(errors))
    assert errors[worst] <= bound, f"{what}({x[worst]!r}) = {got[worst]!r}, float64 {want[worst]!r}: {errors[worst]:.3f} ulp > {bound}"  # fmt: skip
    return float(errors[worst])


# --- sm_90a: the lockstep simulator ---------------------------------------------------------------------------


@functools.cache
def sm90a_results(function: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, the sm_90a kernel's y) over the sweep (test_nvvm_math checks those against its bounds)."""
    x = padded_sweep(WARP)
    return x, run_probe(function, x)


def test_vector_comparisons_and_selects_verify_their_shapes() -> None:
    block = Block(arg_types=[VectorType(f32, [16]), VectorType(f32, [8])])
    wide, narrow = block.args
    mask = upstream.CmpfOp(wide, wide, "ogt")
    assert mask.result.type == VectorType(i1, [16])
    mask.verify()
    with pytest.raises(VerifyException, match="chosen by a vector<8xi1>"):
        upstream.SelectOp(mask.result, narrow, narrow).verify()
    with pytest.raises(VerifyException, match="compares vectors of floats"):
        bits = arith.BitcastOp(wide, VectorType(i32, [16]))
        upstream.CmpfOp(bits.result, bits.result, "ogt").verify()


def test_sm90a_kernel_has_no_math_ops_left() -> None:
    text = lower_dataflow_kernel(probe("exp", "sm_90a", WARP), gpu_arch("sm_90a"), "sm_90a").text
    assert "math." not in text and 'llvm.call_intrinsic "llvm.exp2.f32"' in text


# --- x86: machine code for the host CPU and the x86-64 baseline -------------------------------------------------


def typed_x86(function: str, width: int | None) -> str:
    """The probe as the x86 target lowers a kernel of kernels/: func.func(x, y, begin, end) in MLIR 22's form."""
    kernel = probe(function, "x86", width)
    ModuleOp([kernel]).verify()
    text = emit_kernel(kernel)
    assert "math." not in text, f"{function} on x86 left a math op"
    return text


X86_PROBES = {  # kernel name -> (function, width)
    "typed_exp_16": ("exp", VECTOR),
    "typed_exp_1": ("exp", None),
    "typed_log_16": ("log", VECTOR),
}


@dataclass
class X86Build:
    """The probes built for the host CPU or for the x86-64 baseline."""

    name: str
    library: Any

    def run(self, kernel: str, x: np.ndarray) -> np.ndarray:
        width = X86_PROBES[kernel][1]
        rows = x.reshape(-1) if width is None else x.reshape(-1, width)
        y = np.full_like(rows, 12345.0)
        self.library.kernel(kernel)(rows, y, 0, rows.shape[0])
        return y.reshape(-1)


@pytest.fixture(scope="module", params=["host", "baseline"])
def x86(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> X86Build:
    pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")
    from tessera.lowering.x86.pipeline import build_library

    functions = [typed_x86(function, width) for function, width in X86_PROBES.values()]
    path = tmp_path_factory.mktemp(request.param) / "expand_math.so"
    return X86Build(request.param, build_library(kernels_module(functions), path, host=request.param == "host"))


@pytest.mark.parametrize("width", [VECTOR, None], ids=["vector16", "scalar"])
def test_x86_exp_meets_its_bound(x86: X86Build, width: int | None) -> None:
    x = padded_sweep(VECTOR)
    typed = x86.run(f"typed_exp_{width or 1}", x)
    assert np.isnan(typed[np.isnan(x)]).all(), "exp(NaN) is not NaN"
    assert (typed[x > CEPHES_HIGH] == np.inf).all(), f"exp above {CEPHES_HIGH} is not +inf"
    assert (typed[x <= CEPHES_LOW] == 0.0).all(), f"exp at or below {CEPHES_LOW} is not 0"
    inside = (x > CEPHES_LOW) & (x <= CEPHES_HIGH)
    want = np.exp(x[inside].astype(np.float64))
    worst = assert_within("x86 exp", x[inside], typed[inside], want, CEPHES_BOUND)
    LOG.info("x86 exp (%s, width %s): worst %.3f ulp", x86.name, width, worst)


def test_x86_log_gives_the_sm90a_bits(x86: X86Build) -> None:
    x, sm90a = sm90a_results("log")  # the sweep padded to warps, which are whole vectors too
    assert_same_bits(f"x86 log ({x86.name})", x, x86.run("typed_log_16", x), sm90a)

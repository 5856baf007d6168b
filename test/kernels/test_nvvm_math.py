"""tessera-expand-math's exp, log, sqrt and rsqrt as the NVVM target lowers them, run by the SIMT simulator over a dense
deterministic sweep of float32 against float64 numpy: every exponent (the 254 normal ones and the subnormals'),
each with MANTISSAS evenly spaced mantissas and the extremes, both signs, and +-0, +-inf and NaN.

Where a function is defined and finite the error is measured in ulps of the float64 result's f32 binade,
ulp(w) = 2^(floor(log2 |w|) - 23) (2^-149 at the least), against a bound derived from the arithmetic
(lowering/math/'s docstrings derive each; the simulator's exp2 is float64 rounded once to f32, within
0.5 + 2^-29 ulp, where an H200's ex2.approx.f32 is within 2.055 ulp: exp on the GPU is 1.56 ulp looser than
here, 2.43 ulp). Elsewhere every value must be exactly the documented one (exp: 0 below -87 and +inf above 88; log:
-inf at +-0, NaN below 0; NaN in, NaN out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
from rocdl_sim import Simulator
from tile_kernels import row_block_kernel
from xdsl.dialects.builtin import DYNAMIC_INDEX, MemRefType, f32

from tessera.arch import gpu_arch
from tessera.kernels.builder import KernelBuilder
from tessera.lowering.gpu.dataflow import lower_dataflow_kernel
from tessera.lowering.gpu.kernel import GpuKernel
from tessera.lowering.math.exp import EXP_HIGH, EXP_LOW

LOG = logging.getLogger(__name__)

# Mantissas per exponent: 2.1M points per function (both signs), about 4 s for all four on this 2-core machine.
MANTISSAS = 4096
# The bounds lowering/math/ derives, in ulps: exp 0.874 with the simulator's exp2, log 0.947 (0.840
# exhaustively), sqrt correctly rounded, rsqrt 1.5.
BOUNDS = {"exp": 0.875, "log": 0.95, "sqrt": 0.5, "rsqrt": 1.5}
# On the GPU (benchmarks/gpu_math_sweep.py): exp through ex2.approx.f32 (within 2.055 ulp, measured over all its
# arguments on an H200) is within 2.43 ulp; log, sqrt and rsqrt use only correctly rounded instructions and
# give the simulator's bits.
GPU_BOUNDS = {**BOUNDS, "exp": 2.43}
ELEMENTS = 128  # per program: 4 per lane of a warp
ARCH = "sm_90a"


def float32_sweep(mantissas: int) -> np.ndarray:
    """Every biased exponent 0..254 with `mantissas` evenly spaced mantissas and the extremes (0, 1, 2^23 - 2,
    2^23 - 1), both signs, then +-inf and NaN: +-0, the subnormals and every normal binade."""
    spread = np.linspace(0, 2**23 - 1, mantissas).round()
    fractions = np.unique(np.concatenate([spread, [0, 1, 2**23 - 2, 2**23 - 1]])).astype(np.uint32)
    exponents = np.arange(255, dtype=np.uint32)
    positive = (exponents[:, None] << np.uint32(23) | fractions[None, :]).ravel()
    bits = np.concatenate(
        [positive, positive | np.uint32(0x80000000), np.array([0x7F800000, 0xFF800000, 0x7FC00000], np.uint32)]
    )
    return bits.view(np.float32)


def ulp(want: np.ndarray) -> np.ndarray:
    _, exponent = np.frexp(np.abs(want))
    return np.ldexp(1.0, np.maximum(exponent - 24, -149))


def expected(function: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 result of each input, with the documented values outside the functions' ranges, and where
    it is compared in ulps (elsewhere exactly)."""
    wide = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if function == "exp":
            inside = (wide >= EXP_LOW) & (wide <= EXP_HIGH)
            want = np.where(wide < EXP_LOW, 0.0, np.where(wide > EXP_HIGH, np.inf, np.exp(wide)))
            return want, inside
        finite_positive = (wide > 0) & np.isfinite(wide)
        references: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda v: 1 / np.sqrt(v),
        }  # fmt: skip
        return references[function](wide), finite_positive  # IEEE's values at 0, inf, below 0 and NaN


def probe_kernel(function: str, name: str = "probe") -> GpuKernel:
    """y[i] = function(x[i]) for i < tokens, a program per ELEMENTS of them: a tessera.tile.map of the math op
    through the compiler's path for sm_90a (convert-tessera-tile-to-simt, tessera-expand-math). The GPU sweep,
    benchmarks/gpu_math_sweep.py, compiles the same kernel."""
    k = KernelBuilder({"x": MemRefType(f32, [DYNAMIC_INDEX]), "y": MemRefType(f32, [DYNAMIC_INDEX])})
    x, y = k.buffers
    first, count = k.muli(k.program_id, k.index(ELEMENTS)), k.size(x)
    values = k.map([k.load(x, [first], [ELEMENTS], count)], lambda e, v: getattr(e, function)(v))
    k.store(values, y, [first], count)
    kernel = row_block_kernel(k.finish(), name, "math_probe", ARCH, ELEMENTS, 1)
    return lower_dataflow_kernel(kernel, gpu_arch(ARCH), ARCH)


def run_probe(function: str, x: np.ndarray) -> np.ndarray:
    """y[i] = function(x[i]) by probe_kernel, in the simulator."""
    y = np.full(x.size, 12345.0, np.float32)  # not NaN: an unwritten element fails where NaN is expected too
    Simulator.of(probe_kernel(function), wave_size=32).run(
        (-(-x.size // ELEMENTS), 1), {"x": x, "y": y}, {"tokens": x.size, "position": 0}
    )
    return y


@pytest.mark.parametrize("function", list(BOUNDS))
def test_nvvm_math_over_every_float32_exponent(function: str) -> None:
    x = float32_sweep(MANTISSAS)
    got = run_probe(function, x).astype(np.float64)
    want, compared = expected(function, x)
    errors = np.abs(got[compared] - want[compared]) / ulp(want[compared])
    worst = int(np.argmax(errors))
    LOG.info("nvvm %s: worst %.3f ulp over %d inputs", function, errors[worst], compared.sum())
    assert errors[worst] <= BOUNDS[function], (
        f"{function}({x[compared][worst]!r}) = {got[compared][worst]!r}, float64 {want[compared][worst]!r}: "
        f"{errors[worst]:.3f} ulp > {BOUNDS[function]}"
    )
    exact = ~compared
    wrong = ~((got[exact] == want[exact]) | (np.isnan(got[exact]) & np.isnan(want[exact])))
    assert not wrong.any(), (
        f"{function}: {x[exact][wrong][:5]} -> {got[exact][wrong][:5]}, want {want[exact][wrong][:5]}"
    )


def test_the_sweep_covers_every_exponent_and_the_specials() -> None:
    x = float32_sweep(4)
    exponents = (x.view(np.uint32) >> 23) & 0xFF
    assert set(exponents.tolist()) == set(range(256))
    assert {0.0, np.inf, -np.inf} <= set(x.tolist()) and np.isnan(x).any()
    assert (x.view(np.uint32) == 0x80000000).any() and (x.view(np.uint32) == 1).any()  # -0, the least subnormal

"""f32 exp, log, sqrt and rsqrt written out as MLIR text, for the NVVM kernels still emitted by hand
(lowering/nvvm/*.py through kernel_text.NvvmKernelBuilder.math): convert-gpu-to-nvvm would call libdevice
(__nv_expf, ...), which the PTX cannot carry.

The kernels of kernels/ use tessera-expand-math's typed patterns instead (lowering/expand_math.py with
lowering/math/: exp.exp_by_exp2, log.log_fdlibm, sqrt.sqrt_intrinsic and sqrt.rsqrt_by_division), which are
these algorithms op for op (test/kernels/test_expand_math.py checks the bits are the same) and where the
algorithms and their error bounds are written down. This text copy shares their constants and goes away with
the last hand-written NVVM emitter.
"""

from __future__ import annotations

from tessera.lowering.math.exp import EXP_HIGH, EXP_LOW, LN2_HI, LN2_LO, LOG2E, ROUNDING, ROUNDING_BITS
from tessera.lowering.math.log import LOG_SERIES, ONE_BITS, SMALLEST_NORMAL_BITS, SQRT_HALF_BITS, SUBNORMAL_SCALE
from tessera.lowering.mlir_text import MlirBuilder, float_literal


def _f(b: MlirBuilder, op: str, *operands: str) -> str:
    return b.let("m", f"arith.{op} {', '.join(operands)} : f32")


def _i(b: MlirBuilder, op: str, x: str, y: str) -> str:
    return b.let("m", f"arith.{op} {x}, {y} : i32")


def _c(b: MlirBuilder, value: float) -> str:
    return b.const(float_literal(value), "f32")


def _i32(b: MlirBuilder, value: int) -> str:
    return b.const(str(value), "i32")


def _bits(b: MlirBuilder, x: str) -> str:
    return b.let("m", f"arith.bitcast {x} : f32 to i32")


def _float(b: MlirBuilder, bits: str) -> str:
    return b.let("m", f"arith.bitcast {bits} : i32 to f32")


def _select(b: MlirBuilder, cond: str, x: str, y: str) -> str:
    return b.let("m", f"arith.select {cond}, {x}, {y} : f32")


def _cmp(b: MlirBuilder, predicate: str, x: str, y: str) -> str:
    return b.let("m", f"arith.cmpf {predicate}, {x}, {y} : f32")


def sqrt(b: MlirBuilder, x: str) -> str:
    return b.let("m", f'llvm.call_intrinsic "llvm.sqrt.f32"({x}) : (f32) -> f32')


def exp(b: MlirBuilder, x: str) -> str:
    clamped = _f(b, "minimumf", _f(b, "maximumf", x, _c(b, EXP_LOW)), _c(b, EXP_HIGH))
    rounded = _f(b, "addf", _f(b, "mulf", clamped, _c(b, LOG2E)), _c(b, ROUNDING))
    n = _f(b, "subf", rounded, _c(b, ROUNDING))
    r = _f(b, "subf", _f(b, "subf", clamped, _f(b, "mulf", n, _c(b, LN2_HI))), _f(b, "mulf", n, _c(b, LN2_LO)))
    fraction = b.let("m", f'llvm.call_intrinsic "llvm.exp2.f32"({_f(b, "mulf", r, _c(b, LOG2E))}) : (f32) -> f32')
    exponent = _i(b, "addi", _i(b, "subi", _bits(b, rounded), _i32(b, ROUNDING_BITS)), _i32(b, 127))
    scale = _float(b, _i(b, "shli", exponent, _i32(b, 23)))
    result = _f(b, "mulf", fraction, scale)
    result = _select(b, _cmp(b, "olt", x, _c(b, EXP_LOW)), _c(b, 0.0), result)
    return _select(b, _cmp(b, "ogt", x, _c(b, EXP_HIGH)), b.const("0x7F800000", "f32"), result)


def log(b: MlirBuilder, x: str) -> str:
    # +0 and subnormals (negative x ends in `special` below, whatever happens to it here)
    tiny = _cmp(b, "olt", x, _float(b, _i32(b, SMALLEST_NORMAL_BITS)))
    scaled = _select(b, tiny, _f(b, "mulf", x, _c(b, SUBNORMAL_SCALE)), x)
    shifted = _i(b, "addi", _bits(b, scaled), _i32(b, ONE_BITS - SQRT_HALF_BITS))
    # k = biased exponent - bias, in f32 (exact: small integers); the exponent made a float by ROUNDING
    biased = _i(b, "addi", _i(b, "shrui", shifted, _i32(b, 23)), _i32(b, ROUNDING_BITS))
    bias = _select(b, tiny, _c(b, 127.0 + 25), _c(b, 127.0))
    k_float = _f(b, "subf", _f(b, "subf", _float(b, biased), _c(b, ROUNDING)), bias)
    m = _float(b, _i(b, "addi", _i(b, "andi", shifted, _i32(b, 0x007FFFFF)), _i32(b, SQRT_HALF_BITS)))
    f = _f(b, "subf", m, _c(b, 1.0))
    s = _f(b, "divf", f, _f(b, "addf", f, _c(b, 2.0)))
    z = _f(b, "mulf", s, s)
    series = _c(b, LOG_SERIES[-1])
    for coefficient in reversed(LOG_SERIES[:-1]):
        series = _f(b, "addf", _c(b, coefficient), _f(b, "mulf", z, series))
    r = _f(b, "mulf", z, series)
    half_f_squared = _f(b, "mulf", _f(b, "mulf", f, _c(b, 0.5)), f)
    correction = _f(b, "mulf", s, _f(b, "addf", half_f_squared, r))
    small = _f(b, "subf", _f(b, "addf", correction, _f(b, "mulf", k_float, _c(b, LN2_LO))), half_f_squared)
    result = _f(b, "addf", _f(b, "addf", small, f), _f(b, "mulf", k_float, _c(b, LN2_HI)))
    infinity = b.const("0x7F800000", "f32")
    finite_positive = b.let("m", f"arith.andi {_cmp(b, 'ogt', x, _c(b, 0.0))}, {_cmp(b, 'olt', x, infinity)} : i1")
    special = _select(b, _cmp(b, "oeq", x, _c(b, 0.0)), b.const("0xFF800000", "f32"), b.const("0x7FC00000", "f32"))
    special = _select(b, _cmp(b, "oeq", x, infinity), infinity, special)
    return _select(b, finite_positive, result, special)


def rsqrt(b: MlirBuilder, x: str) -> str:
    return _f(b, "divf", _c(b, 1.0), sqrt(b, x))


FUNCTIONS = {"exp": exp, "log": log, "sqrt": sqrt, "rsqrt": rsqrt}

"""f32 exp, log, sqrt and rsqrt for NVVM kernels, written out in the kernel: convert-gpu-to-nvvm would call
libdevice (__nv_expf, ...), which the PTX cannot carry, and LLVM's NVPTX back end has no exp or log of its
own; and it marks the llvm.intr.* forms illegal, so the intrinsics are called by name. What the hardware
has and these use: llvm.sqrt.f32 (sqrt.rn.f32, correctly rounded) and llvm.exp2.f32 (ex2.approx.f32,
about 2 ulp, used only on |y| <= 0.51).

    exp(x)   Cody-Waite: n = round(x log2 e) (by the 1.5 * 2^23 addition), r = x - n ln2_hi - n ln2_lo
             (n ln2_hi exact: ln2_hi has 16 significant bits, |n| <= 127), exp(x) = exp2(r log2 e) * 2^n,
             2^n built from its exponent bits. x is clamped to [-87, 88] first (2^n stays normal); below
             -87 the result is 0 (so exp(-inf) = 0, as the online softmax needs), above 88 +inf.
    log(x)   fdlibm's logf: x = 2^k m with m in [sqrt(1/2), sqrt(2)) by integer arithmetic on the bits (a
             subnormal x scaled by 2^25 first), f = m - 1 (exact), s = f / (2 + f), h = f^2 / 2 and
             log m = f - h + s (h + R(s^2)) (R: LOG_SERIES), summed as
             log x = (((s (h + R) + k ln2_lo) - h) + f) + k ln2_hi: the large terms f and k ln2_hi come last,
             so the roundings of the small ones count at their own size. 0 -> -inf, +inf -> +inf, below 0 or
             NaN -> NaN.
    rsqrt(x) 1 / sqrt(x), a correctly rounded square root and division (as on the other targets).

Error bounds, first order in u = 2^-24 (f32's unit roundoff), in ulps of the result's f32 binade; the worst
over x of each sum was evaluated on a dense sweep of f32 (test/kernels/test_nvvm_math.py checks them all):
    exp    x - n ln2_hi is exact (Sterbenz), so y = r log2 e carries the roundings of r, n ln2_lo and the
           product and the f32 error of ln2_lo and log2 e: |dy| <= 0.69 u, a relative error ln 2 |dy| in
           exp2(y), at most 0.374 ulp of the result; plus exp2's own: 0.5 ulp where correctly rounded (the
           simulator: 0.874 ulp in all); ex2.approx.f32 on an H200 is within 2.055 ulp over every f32 argument
           of |y| <= 0.51 (measured exhaustively), so 2.43 ulp on the GPU (measured there exhaustively over
           every f32 x in [-87, 88]: 2.07).
    log    each rounding at its size relative to the result, at most 0.95 ulp over x: worst just below
           sqrt(1/2), where (...) + f rounds at the result's binade (0.5) and adding k ln2_hi is exact (both
           multiples of 2^-25; where that addition rounds, (...) + f lies a binade lower, 0.25 + 0.5), plus
           0.13 for (...) - h, 0.10 for h (times 1 - s), 0.19 for s (h + R) with s's error, 0.03 for the rest;
           the series' own error, below 5e-11 of 2 s, adds under 0.001. Exhaustively, over every positive
           f32 in numpy f32 arithmetic bit-identical to these ops: 0.840 ulp (at x = 1.4133185).
    sqrt   correctly rounded: 0.5 ulp.
    rsqrt  the square root's rounding (relative u) moves 1/sqrt by under 1 ulp, the division's rounding adds
           0.5: 1.5 ulp.
Only exp2 is approximate: the rest is IEEE f32 add/sub/mul/div/sqrt (the PTX has them as .rn, which ptxas
does not contract into FMAs) and integer ops, so on the GPU log, sqrt and rsqrt give the simulator's bits.
"""

from __future__ import annotations

from tessera.lowering.mlir_text import MlirBuilder, float_literal

LOG2E = 1.4426950408889634
LN2_HI = 0.693145751953125  # 0x3F317200: 16 significant bits
LN2_LO = 1.428606765330187e-06  # ln 2 - LN2_HI
ROUNDING = 12582912.0  # 1.5 * 2^23: adding it rounds |y| < 2^22 to an integer held in the low mantissa bits
ROUNDING_BITS = 0x4B400000
EXP_LOW, EXP_HIGH = -87.0, 88.0
ONE_BITS, SQRT_HALF_BITS = 0x3F800000, 0x3F3504F3  # 1.0 and sqrt(1/2) rounded down
SMALLEST_NORMAL_BITS = 0x00800000
SUBNORMAL_SCALE = 2.0**25
# fdlibm's logf series (a minimax fit): |log((1 + s) / (1 - s)) / s - 2 - R(s^2)| < 5e-11 on |s| <= 0.1716,
# R(z) = z (L1 + z (L2 + z (L3 + z L4))); each value is exactly an f32.
LOG_SERIES = (0xAAAAAA / 2**24, 0xCCCE13 / 2**25, 0x91E9EE / 2**25, 0xF89E26 / 2**26)


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

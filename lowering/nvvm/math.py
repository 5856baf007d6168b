"""f32 exp, log, sqrt and rsqrt for NVVM kernels, written out in the kernel: convert-gpu-to-nvvm would call
libdevice (__nv_expf, ...), which the PTX cannot carry, and LLVM's NVPTX back end has no exp or log of its
own; and it marks the llvm.intr.* forms illegal, so the intrinsics are called by name. What the hardware
has and these use: llvm.sqrt.f32 (sqrt.rn.f32, correctly rounded) and llvm.exp2.f32 (ex2.approx.f32,
about 2 ulp, used only on |y| <= 0.51).

    exp(x)   Cody-Waite: n = round(x log2 e) (by the 1.5 * 2^23 addition), r = x - n ln2_hi - n ln2_lo
             (n ln2_hi exact: ln2_hi has 16 significant bits, |n| <= 127), exp(x) = exp2(r log2 e) * 2^n,
             2^n built from its exponent bits. x is clamped to [-87, 88] first (2^n stays normal); below
             -87 the result is 0 (so exp(-inf) = 0, as the online softmax needs), above 88 +inf.
    log(x)   x = m 2^k with m in [sqrt(1/2), sqrt(2)) (from the bits: positive normal x), f = m - 1 (exact),
             s = f / (2 + f), log m = 2 atanh s = s (2 + z (2/3 + z (2/5 + z (2/7 + z 2/9)))), z = s^2
             (the next term is below 1e-9 of the sum), log x = k ln2_hi + (log m + k ln2_lo). 0 -> -inf,
             +inf -> +inf, negative or NaN -> NaN; denormals are not handled (the kernels take log of
             values >= 1 only).
    rsqrt(x) 1 / sqrt(x), a correctly rounded square root and division (as on the other targets).
"""

from __future__ import annotations

from tessera.lowering.mlir_text import MlirBuilder, float_literal

LOG2E = 1.4426950408889634
LN2_HI = 0.693145751953125  # 0x3F317200: 16 significant bits
LN2_LO = 1.428606765330187e-06  # ln 2 - LN2_HI
ROUNDING = 12582912.0  # 1.5 * 2^23: adding it rounds |y| < 2^22 to an integer held in the low mantissa bits
ROUNDING_BITS = 0x4B400000
EXP_LOW, EXP_HIGH = -87.0, 88.0
SQRT_HALF_BOUND = 1.4142135623730951
ATANH = (2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0)


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
    bits = _bits(b, x)
    exponent = _i(b, "subi", _i(b, "shrui", bits, _i32(b, 23)), _i32(b, 127))
    m = _float(b, _i(b, "ori", _i(b, "andi", bits, _i32(b, 0x007FFFFF)), _i32(b, 0x3F800000)))
    big = _cmp(b, "ogt", m, _c(b, SQRT_HALF_BOUND))
    m = _select(b, big, _f(b, "mulf", m, _c(b, 0.5)), m)
    k = b.let("m", f"arith.select {big}, {_i(b, 'addi', exponent, _i32(b, 1))}, {exponent} : i32")
    k_float = _f(b, "subf", _float(b, _i(b, "addi", k, _i32(b, ROUNDING_BITS))), _c(b, ROUNDING))
    f = _f(b, "subf", m, _c(b, 1.0))
    s = _f(b, "divf", f, _f(b, "addf", f, _c(b, 2.0)))
    z = _f(b, "mulf", s, s)
    series = _c(b, ATANH[-1])
    for coefficient in reversed(ATANH[:-1]):
        series = _f(b, "addf", _c(b, coefficient), _f(b, "mulf", z, series))
    log_m = _f(b, "mulf", s, _f(b, "addf", _c(b, 2.0), _f(b, "mulf", z, series)))
    result = _f(
        b, "addf", _f(b, "mulf", k_float, _c(b, LN2_HI)), _f(b, "addf", log_m, _f(b, "mulf", k_float, _c(b, LN2_LO)))
    )
    infinity = b.const("0x7F800000", "f32")
    finite_positive = b.let("m", f"arith.andi {_cmp(b, 'ogt', x, _c(b, 0.0))}, {_cmp(b, 'olt', x, infinity)} : i1")
    special = _select(b, _cmp(b, "oeq", x, _c(b, 0.0)), b.const("0xFF800000", "f32"), b.const("0x7FC00000", "f32"))
    special = _select(b, _cmp(b, "oeq", x, infinity), infinity, special)
    return _select(b, finite_positive, result, special)


def rsqrt(b: MlirBuilder, x: str) -> str:
    return _f(b, "divf", _c(b, 1.0), sqrt(b, x))


FUNCTIONS = {"exp": exp, "log": log, "sqrt": sqrt, "rsqrt": rsqrt}

"""exp(x) of f32 in the ops a target has, two ways: both reduce x = n ln2 + r with n = round(x log2 e) (by the
1.5 * 2^23 addition, which leaves n in the low mantissa bits: no floor instruction needed on the x86-64
baseline) and build 2^n from its exponent bits; they differ in how exp(r) is computed.

    exp_by_exp2   (sm_90a) Cody-Waite: r = x - n ln2_hi - n ln2_lo (n ln2_hi exact: ln2_hi has 16
                  significant bits, |n| <= 127), exp(x) = exp2(r log2 e) * 2^n, exp2 being the PTX's
                  ex2.approx.f32 (llvm.exp2.f32), used only on |y| <= 0.51. x is clamped to [-87, 88] first
                  (2^n stays normal); below -87 the result is 0 (so exp(-inf) = 0, as the online softmax
                  needs), above 88 +inf, NaN stays NaN.
    exp_cephes    (x86, scalars and vectors) Cephes' expf: r = x - n C1 - n C2 (C1 = 0.693359375 exact in 9
                  bits), exp(r) = 1 + r + r^2 P(r) (P: CEPHES_SERIES, Horner), in plain arith ops, so that it
                  vectorises on every x86-64 (LLVM would scalarise math.exp on vectors into libm calls). The
                  products and sums marked `contract` become FMAs where the CPU has them. x is clamped below at
                  -87 (at and below it the result is 0, as is exp(-inf)); above CEPHES_HIGH, where 2^n would
                  be 2^128, the result is +inf (exp is finite up to 88.72: the last 0.35 overflow early); NaN
                  stays NaN.

Error bounds, first order in u = 2^-24 (f32's unit roundoff), in ulps of the result's f32 binade, the worst
over x evaluated on a dense sweep of f32 (test/kernels/test_nvvm_math.py, test/kernels/test_expand_math.py):
    exp_by_exp2  x - n ln2_hi is exact (Sterbenz), so y = r log2 e carries the roundings of r, n ln2_lo and
                 the product and the f32 error of ln2_lo and log2 e: |dy| <= 0.69 u, a relative error
                 ln 2 |dy| in exp2(y), at most 0.374 ulp of the result; plus exp2's own: 0.5 ulp where
                 correctly rounded (the simulator: 0.874 ulp in all); ex2.approx.f32 on an H200 is within
                 2.055 ulp over every f32 argument of |y| <= 0.51 (measured exhaustively), so 2.43 ulp on the
                 GPU (measured there exhaustively over every f32 x in [-87, 88]: 2.07).
    exp_cephes   x - n C1 is exact (n C1 has at most 17 significant bits) and C1 + C2 is ln 2 within 1.3e-11,
                 so r (|r| <= 0.3466) is x - n ln2 rounded once with FMA (without: n C2 rounded first), plus
                 |n| <= 127 times that 1.3e-11: together at most 0.20 ulp of the result (a relative error of
                 r's size in exp(r)). Of exp(r) = 1 + s, s = r + r^2 P(r) (|s| <= 0.415): 1 + s rounds once
                 (0.5 ulp), s once (0.25 ulp where 1 + s < 1), and r^2 P (|r^2 P| <= 0.07) carries the roundings
                 of r^2 and of P's Horner steps (and, without FMA, of each product): 0.06 ulp (0.09); the
                 series' own error, 2.7e-9 relative with its coefficients as f32, 0.03. Multiplying by 2^n is
                 exact (the result is normal: exp(-87) > 2^-126). The sum, evaluated at each r on a dense grid,
                 is at most 1.03 ulp with FMA and 1.08 without (both near r = -0.31); measured over the sweep:
                 0.95 and 0.91.
"""

from __future__ import annotations

from xdsl.ir import SSAValue

from tessera.lowering.math.emitter import MathEmitter

LOG2E = 1.4426950408889634
ROUNDING = 12582912.0  # 1.5 * 2^23: adding it rounds |y| < 2^22 to an integer held in the low mantissa bits
ROUNDING_BITS = 0x4B400000
INFINITY = float("inf")

LN2_HI = 0.693145751953125  # 0x3F317200: 16 significant bits
LN2_LO = 1.428606765330187e-06  # ln 2 - LN2_HI
EXP_LOW, EXP_HIGH = -87.0, 88.0

# Cephes' expf: ln 2 = C1 - C2' with C1 exact in 9 bits; the series (1 + r + r^2 P(r)), P highest degree first.
CEPHES_C1, CEPHES_C2 = 0.693359375, -2.12194440e-4
CEPHES_SERIES = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
CEPHES_LOW = -87.0
# The largest f32 x with round(x log2 e) <= 127 (in f32 arithmetic): above it 2^n would overflow.
CEPHES_HIGH = 88.37626


def power_of_two(e: MathEmitter, rounded: SSAValue) -> SSAValue:
    """2^n from `rounded` = ROUNDING + n (n an integer of |n| < 2^22 in the low mantissa bits): n + 127 made
    the exponent field."""
    exponent = e.addi(e.subi(e.bits(rounded), e.i32(ROUNDING_BITS)), e.i32(127))
    return e.from_bits(e.shli(exponent, e.i32(23)))


def exp_by_exp2(e: MathEmitter, x: SSAValue) -> SSAValue:
    clamped = e.minimumf(e.maximumf(x, e.f32(EXP_LOW)), e.f32(EXP_HIGH))
    rounded = e.addf(e.mulf(clamped, e.f32(LOG2E)), e.f32(ROUNDING))
    n = e.subf(rounded, e.f32(ROUNDING))
    r = e.subf(e.subf(clamped, e.mulf(n, e.f32(LN2_HI))), e.mulf(n, e.f32(LN2_LO)))
    fraction = e.intrinsic("llvm.exp2.f32", e.mulf(r, e.f32(LOG2E)))
    result = e.mulf(fraction, power_of_two(e, rounded))
    result = e.select(e.cmpf("olt", x, e.f32(EXP_LOW)), e.f32(0.0), result)
    return e.select(e.cmpf("ogt", x, e.f32(EXP_HIGH)), e.f32(INFINITY), result)


def exp_cephes(e: MathEmitter, x: SSAValue) -> SSAValue:
    floor = e.f32(CEPHES_LOW)
    # Unordered: a NaN passes the clamp and the final choice, and the arithmetic keeps it NaN.
    above = e.cmpf("ugt", x, floor)
    clamped = e.select(above, x, floor)
    rounded = e.addf(e.mulf(clamped, e.f32(LOG2E)), e.f32(ROUNDING))
    n = e.subf(rounded, e.f32(ROUNDING))
    r = e.fma(n, e.f32(-CEPHES_C1), clamped)
    r = e.fma(n, e.f32(-CEPHES_C2), r)
    series = e.f32(CEPHES_SERIES[0])
    for coefficient in CEPHES_SERIES[1:]:
        series = e.fma(series, r, e.f32(coefficient))
    series = e.fma(series, e.mulf(r, r), r)
    value = e.mulf(e.addf(series, e.f32(1.0)), power_of_two(e, rounded))
    result = e.select(above, value, e.f32(0.0))
    return e.select(e.cmpf("ogt", x, e.f32(CEPHES_HIGH)), e.f32(INFINITY), result)

"""log(x) of f32 (scalars and vectors) in IEEE add/sub/mul/div and integer ops only — fdlibm's logf — for
the targets that have no log instruction or library call (sm_90a, x86).

    x = 2^k m with m in [sqrt(1/2), sqrt(2)) by integer arithmetic on the bits (a subnormal x scaled by 2^25
    first), f = m - 1 (exact), s = f / (2 + f), h = f^2 / 2 and log m = f - h + s (h + R(s^2)) (R: LOG_SERIES),
    summed as log x = (((s (h + R) + k ln2_lo) - h) + f) + k ln2_hi: the large terms f and k ln2_hi come last,
    so the roundings of the small ones count at their own size. 0 -> -inf, +inf -> +inf, below 0 or NaN -> NaN.

Error bound, first order in u = 2^-24 (f32's unit roundoff), in ulps of the result's f32 binade: each rounding
at its size relative to the result, at most 0.95 ulp over x: worst just below sqrt(1/2), where (...) + f rounds
at the result's binade (0.5) and adding k ln2_hi is exact (both multiples of 2^-25; where that addition rounds,
(...) + f lies a binade lower, 0.25 + 0.5), plus 0.13 for (...) - h, 0.10 for h (times 1 - s), 0.19 for
s (h + R) with s's error, 0.03 for the rest; the series' own error, below 5e-11 of 2 s, adds under 0.001.
Exhaustively, over every positive f32 in numpy f32 arithmetic bit-identical to these ops: 0.840 ulp (at
x = 1.4133185). Every op is correctly rounded IEEE f32 (none is marked for contraction into an FMA), so every
target gives the same bits.
"""

from __future__ import annotations

from xdsl.ir import SSAValue

from tessera.lowering.math.emitter import MathEmitter
from tessera.lowering.math.exp import INFINITY, LN2_HI, LN2_LO, ROUNDING, ROUNDING_BITS

ONE_BITS, SQRT_HALF_BITS = 0x3F800000, 0x3F3504F3  # 1.0 and sqrt(1/2) rounded down
SMALLEST_NORMAL_BITS = 0x00800000
SUBNORMAL_SCALE = 2.0**25
# fdlibm's logf series (a minimax fit): |log((1 + s) / (1 - s)) / s - 2 - R(s^2)| < 5e-11 on |s| <= 0.1716,
# R(z) = z (L1 + z (L2 + z (L3 + z L4))); each value is exactly an f32.
LOG_SERIES = (0xAAAAAA / 2**24, 0xCCCE13 / 2**25, 0x91E9EE / 2**25, 0xF89E26 / 2**26)
NAN = float("nan")


def log_fdlibm(e: MathEmitter, x: SSAValue) -> SSAValue:
    # +0 and subnormals (negative x ends in `special` below, whatever happens to it here)
    tiny = e.cmpf("olt", x, e.from_bits(e.i32(SMALLEST_NORMAL_BITS)))
    scaled = e.select(tiny, e.mulf(x, e.f32(SUBNORMAL_SCALE)), x)
    shifted = e.addi(e.bits(scaled), e.i32(ONE_BITS - SQRT_HALF_BITS))
    # k = biased exponent - bias, in f32 (exact: small integers); the exponent made a float by ROUNDING
    biased = e.addi(e.shrui(shifted, e.i32(23)), e.i32(ROUNDING_BITS))
    bias = e.select(tiny, e.f32(127.0 + 25), e.f32(127.0))
    k = e.subf(e.subf(e.from_bits(biased), e.f32(ROUNDING)), bias)
    m = e.from_bits(e.addi(e.andi(shifted, e.i32(0x007FFFFF)), e.i32(SQRT_HALF_BITS)))
    f = e.subf(m, e.f32(1.0))
    s = e.divf(f, e.addf(f, e.f32(2.0)))
    z = e.mulf(s, s)
    series = e.f32(LOG_SERIES[-1])
    for coefficient in reversed(LOG_SERIES[:-1]):
        series = e.addf(e.f32(coefficient), e.mulf(z, series))
    r = e.mulf(z, series)
    half_f_squared = e.mulf(e.mulf(f, e.f32(0.5)), f)
    correction = e.mulf(s, e.addf(half_f_squared, r))
    small = e.subf(e.addf(correction, e.mulf(k, e.f32(LN2_LO))), half_f_squared)
    result = e.addf(e.addf(small, f), e.mulf(k, e.f32(LN2_HI)))
    infinity = e.f32(INFINITY)
    finite_positive = e.andi(e.cmpf("ogt", x, e.f32(0.0)), e.cmpf("olt", x, infinity))
    special = e.select(e.cmpf("oeq", x, e.f32(0.0)), e.f32(-INFINITY), e.f32(NAN))
    special = e.select(e.cmpf("oeq", x, infinity), infinity, special)
    return e.select(finite_positive, result, special)

"""sqrt and 1/sqrt of f32 on sm_90a: convert-gpu-to-nvvm would call libdevice's __nv_sqrtf / __nv_rsqrtf, which
the PTX cannot carry, so the intrinsic is called by name.

    sqrt(x)   llvm.sqrt.f32 (sqrt.rn.f32): correctly rounded, 0.5 ulp.
    rsqrt(x)  1 / sqrt(x), a correctly rounded square root and division (as on the other targets): the square
              root's rounding (relative u) moves 1/sqrt by under 1 ulp, the division's adds 0.5: 1.5 ulp.
"""

from __future__ import annotations

from xdsl.ir import SSAValue

from tessera.lowering.math.emitter import MathEmitter


def sqrt_intrinsic(e: MathEmitter, x: SSAValue) -> SSAValue:
    return e.intrinsic("llvm.sqrt.f32", x)


def rsqrt_by_division(e: MathEmitter, x: SSAValue) -> SSAValue:
    return e.divf(e.f32(1.0), sqrt_intrinsic(e, x))

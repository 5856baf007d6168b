"""The math functions tessera-expand-math (lowering/expand_math.py) writes out as ops a target has, each built
as typed IR by a MathEmitter (emitter.py) on f32 or vectors of f32, with its algorithm and error bound:

    exp.py    exp_by_exp2 (sm_90a: Cody-Waite and ex2.approx), exp_cephes (x86: Cephes' polynomial)
    log.py    log_fdlibm (sm_90a, x86: fdlibm's logf in IEEE and integer ops)
    sqrt.py   sqrt_intrinsic, rsqrt_by_division (sm_90a: sqrt.rn.f32)
"""

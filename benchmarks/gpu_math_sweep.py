"""The NVVM target's f32 math (tessera-expand-math: lowering/math/) swept on the GPU itself (issue 12).

    python benchmarks/gpu_math_sweep.py prepare   # here: one cubin (and its PTX) per function, out/gpu_math_sweep/
    python3 benchmarks/gpu_math_sweep.py check    # there, with out/gpu_math_sweep carried (numpy, cuda-bindings)

The simulator test (test/kernels/test_nvvm_math.py) runs the same kernels with numpy's exp2 where the GPU has
ex2.approx.f32; this runs them on the hardware over the same dense deterministic sweep of float32 (every
exponent, evenly spaced mantissas, both signs, the special values), against float64 numpy, and reports the
worst error in units in the last place next to the bound test_nvvm_math.GPU_BOUNDS derives (exp through
ex2.approx.f32 is looser on the GPU than in the simulator; log, sqrt and rsqrt give the simulator's bits). Outside each function's range
every value must be exactly the documented one. One JSON line last; exit 1 if a bound is broken.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from checkout import make_tessera_importable, prepare_or_check

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "gpu_math_sweep"

make_tessera_importable()
sys.path.insert(0, str(ROOT / "test" / "kernels"))

from test_nvvm_math import ELEMENTS, GPU_BOUNDS, MANTISSAS, expected, float32_sweep, probe_kernel, ulp  # noqa: E402


def prepare(out: Path) -> None:
    from tessera.lowering.gpu.kernel import kernels_module
    from tessera.lowering.nvvm.pipeline import compile_kernels

    out.mkdir(parents=True, exist_ok=True)
    kernels = [probe_kernel(function, f"sweep_{function}") for function in GPU_BOUNDS]
    artifacts = compile_kernels(kernels_module(kernels), "math_sweep", sass=False)
    (out / "math_sweep.ptx").write_text(artifacts.ptx)
    (out / "math_sweep.cubin").write_bytes(artifacts.cubin.data)
    print(f"prepared {out}: {', '.join(GPU_BOUNDS)} ({len(artifacts.cubin.data)}-byte cubin)")


def check(out: Path) -> int:
    from tessera.errors import TesseraError
    from tessera.runtime.cuda import CudaDriver
    from tessera.runtime.gpu_module import KernelScalar

    try:
        driver = CudaDriver()
    except TesseraError as error:  # no GPU or no binding: one line, the JSON still last
        print(json.dumps({"gpu_math_sweep": {"error": str(error)}, "ok": False}))
        return 1
    module = driver.load_module((out / "math_sweep.cubin").read_bytes())
    results: dict[str, object] = {"device": driver.device_name()}
    failed = False
    x = float32_sweep(MANTISSAS)
    for function, bound in GPU_BOUNDS.items():
        y = np.full(x.size, 12345.0, np.float32)  # not NaN: an unwritten element fails where NaN is expected
        source, result = driver.alloc(x.nbytes), driver.alloc(y.nbytes)
        driver.upload(source, x)
        driver.upload(result, y)
        scalars = [KernelScalar(int(x.size), "i32"), KernelScalar(0, "i32")]
        grid = (-(-x.size // ELEMENTS), 1, 1)  # a warp per program of ELEMENTS
        driver.launch(module.function(f"sweep_{function}"), grid, (32, 1, 1), 0, [source, result, *scalars])
        driver.synchronize()
        driver.download(result, y)
        driver.free(source)
        driver.free(result)
        got = y.astype(np.float64)
        want, compared = expected(function, x)
        errors = np.abs(got[compared] - want[compared]) / ulp(want[compared])
        worst = float(np.max(errors))
        exact = ~compared
        wrong = int(np.sum(~((got[exact] == want[exact]) | (np.isnan(got[exact]) & np.isnan(want[exact])))))
        ok = worst <= bound and wrong == 0
        failed |= not ok
        results[function] = {"points": int(x.size), "worst_ulp": worst, "bound_ulp": bound, "wrong_specials": wrong}
        print(f"{function}: {x.size} points, worst {worst:.3f} ulp (bound {bound}), wrong outside the range: {wrong}")
    print(json.dumps({"gpu_math_sweep": results, "ok": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(prepare_or_check("gpu_math_sweep.py", __doc__, OUT, prepare, check))

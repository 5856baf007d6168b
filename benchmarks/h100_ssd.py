"""Hopper's chunked SSD scan under bf16 (kernels/ssd_blocks.py's warpgroup form: its four products on WGMMA,
lowering/nvvm/warpgroup_mma.py) on an H100 or H200: one command there.

    python benchmarks/h100_ssd.py build [--mamba-ssm]   # here (MLIR 22, LLVM, ptxas): out/h100_ssd/ (git-
                                                        # ignored); --mamba-ssm also unpacks mamba_ssm's Triton
                                                        # SSD files from its PyPI sdist into out/h100_ssd/
                                                        # mamba_ssm_src/ (never committed: not our code)
    python3 benchmarks/h100_ssd.py [check]              # there, from a copy of the checkout with out/h100_ssd
                                                        # carried (numpy, cuda-bindings; torch, triton and
                                                        # einops for mamba_ssm)

build writes one cubin and its PTX per mixer shape (tokens is a launch argument) and spec.json: the specs,
the kernel each runs, its launch (128 threads: one warpgroup; grid heads x channel blocks; the dynamic shared
bytes of its staged operands) and what ptxas reported.

check, per spec (a prefill from a random state): zxbcdt and xbc f32 drawn as test_rocdl_kernels' draw_mamba
draws them (dt_bias around -2, A_log spread, D around 1; of zxbcdt only the dt columns the scan reads), y
f32 prefilled with NaN; one launch; y and the
final state against float64 (reference/mamba2.ssd_chunked, dt clamped to time_step_min, + D x) on sampled
heads, relative error max|got - ref| / max|ref| <= 2e-2 (bf16 operands, f32 sums); NaN fails. Then the median
of 20 launches (CUDA events) against mamba_ssm's
`mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size=128, D=D, dt_bias=dt_bias, dt_softplus=True)` on the
same values in bf16 (x [1, T, H, P], dt [1, T, H], B and C [1, T, G, N]); its Triton kernels are autotuned in
the warm-up, which the timing excludes. Prints a line per spec and one JSON line last; exit 1 if a numerics
check fails or a kernel hangs or faults.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from checkout import make_tessera_importable
from h100_gemm import (
    BuiltSpec,
    DeviceBuffers,
    _median_ms,
    _torch,
    _wait,
    build_specs,
    check_specs,
    kernel_benchmark_main,
    relative_error,
    torch_median_ms,
)

ROOT = Path(__file__).resolve().parent.parent

make_tessera_importable()
OUT = ROOT / "out" / "h100_ssd"
MAMBA_SSM = "mamba-ssm==2.3.2.post1"  # ../shared/TOOLCHAIN.md: the source that gave its anchor figures
MAMBA_SSM_FILES = ("ops/triton/", "utils/torch.py", "utils/determinism.py")  # its Triton SSD, what it imports
MAMBA_SSM_SRC = "mamba_ssm_src"
TOLERANCE = 2e-2
SAMPLED_HEADS = 4
TIME_STEP_MIN = 1e-3
# name: tokens, heads, head dim (P), groups, state (N), chunk — Nemotron-Nano-12B's mixer at 8K and 32K.
SPECS: dict[str, tuple[int, int, int, int, int, int]] = {
    "nano12b_8k": (8192, 128, 80, 8, 128, 128),
    "nano12b_32k": (32768, 128, 80, 8, 128, 128),
    "small_t300_h4_p20_g2_n40": (300, 4, 20, 2, 40, 128),
}


def _kernel_name(heads: int, head_dim: int, groups: int, state: int, chunk: int) -> str:
    return f"ssd_scan_sm90_h{heads}_p{head_dim}_g{groups}_n{state}_l{chunk}"


# --- build (here) ------------------------------------------------------------------------------------------


def build(out: Path, only: list[str] | None = None) -> dict[str, Any]:
    def kernel_of(name: str, spec: tuple[Any, ...]) -> BuiltSpec:
        tokens, heads, head_dim, groups, state, chunk = spec
        dims = {"num_heads": heads, "head_dim": head_dim, "n_groups": groups, "state_size": state,
                "chunk_size": chunk, "time_step_min": TIME_STEP_MIN, "state_dtype": "f32"}  # fmt: skip
        fields = {"heads": heads, "head_dim": head_dim, "groups": groups, "state": state, "chunk": chunk}
        return BuiltSpec(_kernel_name(heads, head_dim, groups, state, chunk), {"tokens": tokens}, "ssd_scan", dims,
                         fields)  # fmt: skip

    def check_tiles(kernel: str, tiles: dict[str, Any]) -> None:
        if tiles.get("threads") != 128 or tiles.get("operand_bf16") != 1:
            raise SystemExit(f"{kernel}: the sm_90a policy did not choose the warpgroup form ({tiles})")

    return build_specs(out, "h100_ssd", SPECS, only, kernel_of, check_tiles)


def unpack_mamba_ssm(out: Path) -> None:
    """mamba_ssm's Triton SSD files from its PyPI source archive (downloaded without building: its CUDA
    extensions are not needed) into out/mamba_ssm_src, with empty package __init__ files — the package's own
    import those extensions."""
    target = out / MAMBA_SSM_SRC
    if (target / "mamba_ssm" / "ops" / "triton" / "ssd_combined.py").is_file():
        return
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                   "--no-build-isolation", MAMBA_SSM, "-d", scratch]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "MAMBA_SKIP_CUDA_BUILD": "TRUE"})
        (archive,) = Path(scratch).glob("mamba_ssm-*.tar.gz")
        with tarfile.open(archive) as sdist:
            for member in sdist.getmembers():
                parts = member.name.split("/mamba_ssm/", 1)
                if member.isfile() and len(parts) == 2 and parts[1].startswith(MAMBA_SSM_FILES):
                    path = target / "mamba_ssm" / parts[1]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    source = sdist.extractfile(member)
                    assert source is not None
                    path.write_bytes(source.read())
    for package in [target / "mamba_ssm", *(p for p in (target / "mamba_ssm").rglob("*") if p.is_dir())]:
        (package / "__init__.py").write_text("")
    print(f"unpacked {MAMBA_SSM}'s Triton SSD into {target}")


# --- check (on the GPU) ------------------------------------------------------------------------------------


class Inputs:
    """One spec's inputs, drawn as test_rocdl_kernels.draw_mamba draws them."""

    def __init__(self, rng: np.random.Generator, tokens: int, kernel: dict[str, Any]) -> None:
        self.heads, self.head_dim, self.groups, self.state, self.chunk = (
            kernel[key] for key in ("heads", "head_dim", "groups", "state", "chunk")
        )  # fmt: skip
        self.inner = self.heads * self.head_dim
        self.channels = self.inner + 2 * self.groups * self.state
        width = 2 * self.inner + 2 * self.groups * self.state + self.heads
        # The scan reads only dt's columns of zxbcdt (the rest is z and the conv's input): drawn where read.
        self.zxbcdt = np.zeros((tokens, width), np.float32)
        self.zxbcdt[:, self.inner + self.channels :] = rng.standard_normal((tokens, self.heads), dtype=np.float32)
        self.xbc = rng.standard_normal((tokens, self.channels), dtype=np.float32)
        self.dt_bias = (rng.standard_normal(self.heads) - 2).astype(np.float32)
        self.a_log = np.log(rng.random(self.heads) * 4 + 0.5).astype(np.float32)
        self.d = (1 + 0.3 * rng.standard_normal(self.heads)).astype(np.float32)
        self.state0 = rng.standard_normal((self.heads, self.head_dim, self.state), dtype=np.float32)

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """x [T, H, P], B and C [T, G, N], the raw dt [T, H] (before its bias)."""
        tokens, g_n = len(self.xbc), self.groups * self.state
        x = self.xbc[:, : self.inner].reshape(tokens, self.heads, self.head_dim)
        b = self.xbc[:, self.inner : self.inner + g_n].reshape(tokens, self.groups, self.state)
        c = self.xbc[:, self.inner + g_n :].reshape(tokens, self.groups, self.state)
        return x, b, c, self.zxbcdt[:, self.inner + self.channels :]

    def reference(self, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float64 y [T, len(heads), P] and final state [len(heads), P, N] of the chosen heads."""
        from tessera.reference.common import softplus
        from tessera.reference.mamba2 import ssd_chunked

        group = heads // (self.heads // self.groups)
        x, b, c, dt_raw = self.split()
        x, b, c, dt_raw = (
            part.astype(np.float64) for part in (x[:, heads], b[:, group], c[:, group], dt_raw[:, heads])
        )
        dt = np.maximum(softplus(dt_raw + self.dt_bias[heads]), TIME_STEP_MIN)
        a = -np.exp(self.a_log[heads].astype(np.float64))
        y, final = ssd_chunked(x, dt, a, b, c, self.state0[heads].astype(np.float64), self.chunk)
        return y + x * self.d[heads, None], final


def _mamba_ssm_ms(torch: Any, inputs: Inputs, src: Path) -> float:
    """mamba_ssm's mamba_chunk_scan_combined on the inputs in bf16 (the call the issue names)."""
    sys.path.insert(0, str(src))
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

    x, b, c, dt_raw = (torch.from_numpy(np.ascontiguousarray(part)).cuda().to(torch.bfloat16)[None]
                       for part in inputs.split())  # fmt: skip
    a = -torch.exp(torch.from_numpy(inputs.a_log).cuda())
    d, dt_bias = (torch.from_numpy(values).cuda() for values in (inputs.d, inputs.dt_bias))

    def run() -> Any:
        return mamba_chunk_scan_combined(x, dt_raw, a, b, c, chunk_size=inputs.chunk, D=d, dt_bias=dt_bias,
                                         dt_softplus=True)  # fmt: skip

    return torch_median_ms(torch, run)  # its Triton kernels autotune in the warm-up


def check_spec(driver: Any, module: Any, name: str, spec: dict[str, Any], kernel: dict[str, Any], torch: Any,
               seed: int, mamba_ssm: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one spec: numerics, then timing (against mamba_ssm where `mamba_ssm`, its unpacked source, is
    given); the result's "ok" is the numerics verdict."""
    from tessera.runtime.gpu_module import KernelScalar

    tokens = spec["tokens"]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    inputs = Inputs(rng, tokens, kernel)
    heads, head_dim = inputs.heads, inputs.head_dim
    with DeviceBuffers(driver) as device:
        state_dev = device(inputs.state0)
        y_dev = device(np.full((tokens, inputs.inner), np.nan, np.float32))
        args = [device(inputs.zxbcdt), device(inputs.xbc), device(inputs.dt_bias), device(inputs.a_log),
                device(inputs.d), state_dev, y_dev, KernelScalar(tokens, "i32"), KernelScalar(0, "i32")]  # fmt: skip
        function = module.function(spec["kernel"])
        grid = (heads * -(-head_dim // kernel["tiles"]["block_p"]), 1, 1)

        def launch() -> None:
            driver.launch(function, grid, (kernel["threads"], 1, 1), kernel["shared_bytes"], args)

        launch()
        _wait(driver, f"{name}: the first launch")
        y, state = np.empty((tokens, inputs.inner), np.float32), np.empty_like(inputs.state0)
        driver.download(y_dev, y)
        driver.download(state_dev, state)
        checked = np.unique(np.concatenate([[0, heads - 1], rng.choice(heads, min(SAMPLED_HEADS, heads), False)]))
        want_y, want_state = inputs.reference(checked)
        got_y = y.reshape(tokens, heads, head_dim)[:, checked].astype(np.float64)
        result: dict[str, Any] = {
            "tokens": tokens, "heads": heads, "head_dim": head_dim, "state": inputs.state,
            "rel_error": max(relative_error(got_y, want_y), relative_error(state[checked].astype(np.float64), want_state)),
            "reference": f"float64, y and state of {len(checked)} heads",
            "all_finite": bool(np.isfinite(y).all() and np.isfinite(state).all()), "tolerance": TOLERANCE,
        }  # fmt: skip
        result["ok"] = result["all_finite"] and result["rel_error"] <= TOLERANCE
        # The launch continues from the state the previous one left: the timing needs no fresh state.
        result["ms"] = _median_ms(driver, launch)
        if torch is not None and mamba_ssm is not None:
            try:
                result["mamba_ssm_ms"] = _mamba_ssm_ms(torch, inputs, mamba_ssm)
                result["vs_mamba_ssm"] = result["mamba_ssm_ms"] / result["ms"]  # > 1: faster than mamba_ssm
            except Exception as error:  # the baseline failing is reported, not fatal
                result["mamba_ssm_error"] = f"{type(error).__name__}: {error}"
        return result


def run(out: Path, seed: int | None = None) -> dict[str, Any]:
    """check's summary (benchmarks/hopper.py tabulates it)."""
    source = out / MAMBA_SSM_SRC
    baseline = source if (source / "mamba_ssm").is_dir() else None
    return check_specs(out, "h100_ssd", seed, _torch(), functools.partial(check_spec, mamba_ssm=baseline), _describe)


def check(out: Path, seed: int | None = None) -> int:
    return 0 if run(out, seed)["ok"] else 1


def _describe(name: str, result: dict[str, Any]) -> str:
    line = f"{name}: rel error {result['rel_error']:.2e} ({result['reference']}) <= {TOLERANCE:g}: "
    line += f"{'ok' if result['ok'] else 'FAIL'}; {result['ms']:.3f} ms"
    if "mamba_ssm_ms" in result:
        line += f"; mamba_ssm {result['mamba_ssm_ms']:.3f} ms; tessera / mamba_ssm speed {result['vs_mamba_ssm']:.2f}x"
    elif "mamba_ssm_error" in result:
        line += f"; mamba_ssm failed: {result['mamba_ssm_error']}"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/h100_ssd.py", description=__doc__.splitlines()[0])
    parser.add_argument("--mamba-ssm", action="store_true", help=f"build: also unpack {MAMBA_SSM}'s Triton SSD")

    def unpack(options: argparse.Namespace) -> None:
        if options.mamba_ssm:
            unpack_mamba_ssm(options.out)

    return kernel_benchmark_main("h100_ssd.py", __doc__, OUT, build, check, unpack, parser)


if __name__ == "__main__":
    sys.exit(main())

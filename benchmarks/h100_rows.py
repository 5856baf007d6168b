"""Hopper's bandwidth-bound row kernels (tiling/gpu_rows.py: a warp a row in 16-byte vector runs; conv_silu a
warp per 128 channels and block of 64 tokens) at the Nano 12B's shapes, against the device's own copy: one
command there.

    python benchmarks/h100_rows.py build     # here (MLIR 22, LLVM, ptxas): out/h100_rows/ (git-ignored)
    python3 benchmarks/h100_rows.py [check]  # there, from a copy of the checkout with out/h100_rows carried
                                             # (numpy, cuda-bindings; torch for the copy)

check, per spec: random f32 inputs, outputs prefilled with NaN; one launch, its outputs against float64
(reference/common.rmsnorm, reference/mamba2.gated_rmsnorm and causal_conv; embedding and kv_append exactly;
bf16 outputs within 2^-8 of the rounded reference), NaN fails; then the median of 20 launches (CUDA events),
the bytes it must move (each input read once, each output written once) over that time, and the same bytes at
the bandwidth of torch's device-to-device copy measured in the same run (`copy_`, 1 GiB: 2 bytes moved a
byte). The issue's bar: every row kernel at 70% of that copy or better. Prints a line per spec, one JSON line
last; exit 1 if a numerics check fails or a kernel hangs or faults.
"""

from __future__ import annotations

import functools
import sys
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
    from_bf16_bits,
    kernel_benchmark_main,
    relative_error,
    to_bf16_bits,
    torch_median_ms,
)

ROOT = Path(__file__).resolve().parent.parent

make_tessera_importable()
OUT = ROOT / "out" / "h100_rows"
TOKENS = 8192
EPSILON = 1e-5
F32_TOLERANCE = 1e-5
BF16_TOLERANCE = 2.0**-8  # one rounding of the output, relative to the row's largest value
COPY_BYTES = 1 << 30
MIXER = {"num_heads": 128, "head_dim": 80, "n_groups": 8, "state_size": 128}  # the 12B's Mamba-2 mixer
# name: (kind, dims) — the Nano 12B's row kernels at 8K tokens (embedding from the slice's 32K vocabulary).
SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "rmsnorm": ("rmsnorm", {"hidden": 5120, "epsilon": EPSILON, "out_dtype": "bf16"}),
    "rms_scale": ("rms_scale", {"hidden": 5120, "epsilon": EPSILON}),
    "gated_rmsnorm": ("gated_rmsnorm", {**MIXER, "epsilon": EPSILON, "out_dtype": "bf16"}),
    "embedding": ("embedding", {"hidden": 5120, "vocab": 32768}),
    "kv_append": (
        "kv_append",
        {"num_heads": 40, "num_kv_heads": 8, "head_dim": 128, "max_seq_len": TOKENS, "cache_dtype": "bf16"},
    ),
    "conv_silu": ("conv_silu", {**MIXER, "conv_kernel": 4, "channels": 10240 + 2 * 8 * 128, "conv_bias": 1}),
}


def build(out: Path, only: list[str] | None = None) -> dict[str, Any]:
    def kernel_of(name: str, spec: tuple[Any, ...]) -> BuiltSpec:
        kind, dims = spec
        return BuiltSpec(f"{name}_rows", {"tokens": TOKENS}, kind, dims, {"kind": kind, "dims": dims})

    return build_specs(out, "h100_rows", SPECS, only, kernel_of)


# --- check (on the GPU) ------------------------------------------------------------------------------------


def _f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32)


class Case:
    """One spec's host arrays in the kernel's parameter order, the outputs' names, the float64 expectation of
    each output, and its grid."""

    def __init__(self, kind: str, dims: dict[str, Any], tiles: dict[str, Any], tokens: int,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.buffers: dict[str, np.ndarray] = {}
        self.expected: dict[str, np.ndarray] = {}
        self.grid = (tokens, 1, 1)
        self.bytes = 0  # what the kernel must move: each input it reads once, each output once
        getattr(self, f"_{kind}")(dims, tiles, tokens, rng)

    @property
    def outputs(self) -> list[str]:
        return list(self.expected)

    def _rmsnorm(self, dims: dict[str, Any], tiles: dict[str, Any], tokens: int, rng: np.random.Generator) -> None:
        from tessera.reference.common import rmsnorm

        hidden = dims["hidden"]
        x, weight = _f32(rng.standard_normal((tokens, hidden)) * 3), _f32(1 + 0.3 * rng.standard_normal(hidden))
        self.buffers = {"x": x, "weight": weight, "out": np.full((tokens, hidden), 0x7FC0, np.uint16)}
        self.expected["out"] = rmsnorm(x, weight.astype(np.float64), EPSILON)
        self.bytes = x.nbytes + weight.nbytes + tokens * hidden * 2

    def _rms_scale(self, dims: dict[str, Any], tiles: dict[str, Any], tokens: int, rng: np.random.Generator) -> None:
        h = _f32(rng.standard_normal((tokens, dims["hidden"])) * 3)
        self.buffers = {"h": h, "rstd": np.full(tokens, np.nan, np.float32)}
        self.expected["rstd"] = 1 / np.sqrt(np.mean(h.astype(np.float64) ** 2, axis=-1) + EPSILON)
        self.bytes = h.nbytes + tokens * 4

    def _gated_rmsnorm(self, dims: dict[str, Any], tiles: dict[str, Any], tokens: int,
                       rng: np.random.Generator) -> None:  # fmt: skip
        from tessera.reference.mamba2 import gated_rmsnorm

        inner = dims["num_heads"] * dims["head_dim"]
        width = 2 * inner + 2 * dims["n_groups"] * dims["state_size"] + dims["num_heads"]
        zxbcdt, y = _f32(rng.standard_normal((tokens, width)) * 2), _f32(rng.standard_normal((tokens, inner)))
        weight = _f32(1 + 0.3 * rng.standard_normal(inner))
        self.buffers = {"zxbcdt": zxbcdt, "y": y, "norm_weight": weight,
                        "out": np.full((tokens, inner), 0x7FC0, np.uint16)}  # fmt: skip
        z = zxbcdt[:, :inner].astype(np.float64)
        self.expected["out"] = gated_rmsnorm(y.astype(np.float64), z, weight, dims["n_groups"], EPSILON)
        self.bytes = tokens * inner * 4 + y.nbytes + weight.nbytes + tokens * inner * 2  # z, y, weight, out

    def _embedding(self, dims: dict[str, Any], tiles: dict[str, Any], tokens: int, rng: np.random.Generator) -> None:
        ids = rng.integers(0, dims["vocab"], tokens).astype(np.int64)
        table = _f32(rng.standard_normal((dims["vocab"], dims["hidden"])))
        self.buffers = {"ids": ids, "table": table, "out": np.full((tokens, dims["hidden"]), np.nan, np.float32)}
        self.expected["out"] = table[ids].astype(np.float64)
        self.bytes = ids.nbytes + 2 * tokens * dims["hidden"] * 4  # the rows read, and written

    def _kv_append(self, dims: dict[str, Any], tiles: dict[str, Any], tokens: int, rng: np.random.Generator) -> None:
        heads, kv_heads, head_dim = dims["num_heads"], dims["num_kv_heads"], dims["head_dim"]
        qkv = _f32(rng.standard_normal((tokens, (heads + 2 * kv_heads) * head_dim)))
        shape = (dims["max_seq_len"], kv_heads, head_dim)
        self.buffers = {"qkv": qkv, "k_cache": np.full(shape, 0x7FC0, np.uint16),
                        "v_cache": np.full(shape, 0x7FC0, np.uint16)}  # fmt: skip
        for name, first in (("k_cache", heads), ("v_cache", heads + kv_heads)):
            part = qkv[:, first * head_dim : (first + kv_heads) * head_dim].reshape(tokens, kv_heads, head_dim)
            self.expected[name] = from_bf16_bits(to_bf16_bits(part)).astype(np.float64)
        self.bytes = tokens * 2 * kv_heads * head_dim * (4 + 2)  # keys and values read in f32, written in bf16

    def _conv_silu(self, dims: dict[str, Any], tiles: dict[str, Any], tokens: int, rng: np.random.Generator) -> None:
        from tessera.reference.mamba2 import Mamba2Weights, causal_conv

        inner, channels, taps = dims["num_heads"] * dims["head_dim"], dims["channels"], dims["conv_kernel"]
        zxbcdt = _f32(rng.standard_normal((tokens, inner + channels + dims["num_heads"])))
        weight, bias = _f32(rng.standard_normal((channels, taps)) * 0.5), _f32(rng.standard_normal(channels) * 0.2)
        state = _f32(rng.standard_normal((channels, taps - 1)))
        self.buffers = {"zxbcdt": zxbcdt, "conv_weight": weight, "conv_bias": bias, "conv_state": state.copy(),
                        "xbc": np.full((tokens, channels), np.nan, np.float32)}  # fmt: skip
        reference = Mamba2Weights(None, weight, None, None, None, None, None, conv_bias=bias)  # type: ignore[arg-type]
        xbc = zxbcdt[:, inner : inner + channels].astype(np.float64)
        self.expected["xbc"], self.expected["conv_state"] = causal_conv(xbc, reference, state)
        self.grid = (-(-channels // tiles["block"]), -(-tokens // tiles["rows"]), 1)
        self.bytes = 2 * tokens * channels * 4 + weight.nbytes + bias.nbytes + 2 * state.nbytes


def check_spec(driver: Any, module: Any, name: str, spec: dict[str, Any], kernel: dict[str, Any], torch: Any,
               seed: int, copy_rate: float | None = None) -> dict[str, Any]:  # fmt: skip
    """One spec: numerics, then its time, its bytes over that time, and that against the measured copy."""
    from tessera.runtime.gpu_module import KernelScalar

    tokens = spec["tokens"]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    case = Case(kernel["kind"], kernel["dims"], kernel["tiles"], tokens, rng)
    with DeviceBuffers(driver) as device:
        on_device = {name: device(host) for name, host in case.buffers.items()}
        args = [*on_device.values(), KernelScalar(tokens, "i32"), KernelScalar(0, "i32")]
        function = module.function(spec["kernel"])

        def launch() -> None:
            driver.launch(function, case.grid, (kernel["threads"], 1, 1), kernel["shared_bytes"], args)

        launch()
        _wait(driver, f"{name}: the first launch")
        error, finite = 0.0, True
        for output in case.outputs:
            got = np.empty_like(case.buffers[output])
            driver.download(on_device[output], got)
            values = from_bf16_bits(got) if got.dtype == np.uint16 else got
            finite = finite and bool(np.isfinite(values).all())
            error = max(error, relative_error(values.astype(np.float64), case.expected[output]))
        bf16 = any(case.buffers[output].dtype == np.uint16 for output in case.outputs)
        tolerance = BF16_TOLERANCE if bf16 else F32_TOLERANCE
        result: dict[str, Any] = {"rel_error": error, "tolerance": tolerance, "all_finite": finite,
                                  "ok": finite and error <= tolerance, "bytes": case.bytes}  # fmt: skip
        result["ms"] = _median_ms(driver, launch)  # conv_state advances each launch: the timing needs no reset
        result["gb_per_s"] = result["bytes"] / result["ms"] / 1e6
        if copy_rate:
            result["copy_ms"] = result["bytes"] / copy_rate * 1e3  # the same bytes at the copy's rate
            result["of_copy"] = result["copy_ms"] / result["ms"]
        return result


def copy_bytes_per_s(torch: Any) -> float | None:
    """torch's device-to-device copy of COPY_BYTES: bytes read and written per second."""
    if torch is None:
        return None
    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    ms = torch_median_ms(torch, lambda: target.copy_(source))
    return 2 * COPY_BYTES / ms * 1e3


def run(out: Path, seed: int | None = None) -> dict[str, Any]:
    """check's summary (benchmarks/hopper.py tabulates it): each spec's "copy_ms" is its bytes at the copy's
    rate, so that Tessera / baseline is the share of the copy's bandwidth reached."""
    torch = _torch()
    bandwidth = copy_bytes_per_s(torch)
    summary = check_specs(out, "h100_rows", seed, torch, functools.partial(check_spec, copy_rate=bandwidth), _describe)
    summary["copy_gb_per_s"] = None if bandwidth is None else bandwidth / 1e9
    return summary


def check(out: Path, seed: int | None = None) -> int:
    return 0 if run(out, seed)["ok"] else 1


def _describe(name: str, result: dict[str, Any]) -> str:
    line = f"{name}: rel error {result['rel_error']:.2e} <= {result['tolerance']:.1e}: "
    line += f"{'ok' if result['ok'] else 'FAIL'}; {result['ms']:.3f} ms, {result['gb_per_s']:.0f} GB/s"
    if "of_copy" in result:
        line += f" ({100 * result['of_copy']:.0f}% of the copy's bandwidth)"
    return line


if __name__ == "__main__":
    sys.exit(kernel_benchmark_main("h100_rows.py", __doc__, OUT, build, check))

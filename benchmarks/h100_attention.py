"""Hopper attention under bf16 (kernels/attention.py's bf16_operands form: both products on WGMMA,
lowering/nvvm/warpgroup_mma.py) on an H100 or H200: one command there.

    python benchmarks/h100_attention.py build     # here (MLIR 22, LLVM, ptxas): out/h100_attention/ (git-ignored)
    python3 benchmarks/h100_attention.py [check]  # there, from a copy of the checkout with out/h100_attention
                                                  # carried (numpy, cuda-bindings; torch for the SDPA baseline)

build writes one cubin and its PTX per kernel (heads, KV heads, head dim and cache rows: tokens is a launch
argument) and spec.json: the specs, the kernel each runs, its launch (256 threads: a warpgroup per 64 of a
program's 128 query rows; grid (heads, ceil(tokens / 128)); the dynamic shared bytes of its staged operands)
and what ptxas reported.

check, per spec (a prefill from position 0): random qkv f32 [tokens, (H + 2 Hkv) D] (scale 1.5), the caches
bf16 [rows, Hkv, D] holding its K and V rounded (kv_append's part) and NaN past the tokens (never read), out
bf16 prefilled with NaN; one launch; out against float64 (the scaled queries rounded to bf16, as the kernel
rounds them) on the first, last and sampled query rows of every head, relative error max|out - ref| /
max|ref| <= 1e-2; NaN fails. Then the median of 20 launches (CUDA events) against torch's
scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True) with q [1, H, T, D], k and v
[1, Hkv, T, D] bf16 on the same values; TFLOP/s count the causal half, 4 T² D H / 2. Prints a line per spec
and one JSON line last; exit 1 if a numerics check fails or a kernel hangs or faults.
"""

from __future__ import annotations

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
    _torch_bf16,
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
OUT = ROOT / "out" / "h100_attention"
QUERY_ROWS = 128  # the sm_90a policy's token block: two warpgroups' rows
SAMPLED_ROWS = 32
TOLERANCE = 1e-2
# name: tokens, query heads, KV heads, head dim, cache rows (Nemotron-Nano-12B's attention at 8K and 32K)
SPECS: dict[str, tuple[int, int, int, int, int]] = {
    "nano12b_8k": (8192, 40, 8, 128, 32768),
    "nano12b_32k": (32768, 40, 8, 128, 32768),
    "small_t200_h4_kv2_d64": (200, 4, 2, 64, 256),
}


def _kernel_name(heads: int, kv_heads: int, head_dim: int, rows: int) -> str:
    return f"attention_sm90_h{heads}_kv{kv_heads}_d{head_dim}_s{rows}"


# --- build (here) ------------------------------------------------------------------------------------------


def build(out: Path, only: list[str] | None = None) -> dict[str, Any]:
    def kernel_of(name: str, spec: tuple[Any, ...]) -> BuiltSpec:
        tokens, heads, kv_heads, head_dim, rows = spec
        dims = {"num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim, "max_seq_len": rows,
                "cache_dtype": "bf16", "out_dtype": "bf16"}  # fmt: skip
        fields = {"heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "rows": rows}
        return BuiltSpec(_kernel_name(heads, kv_heads, head_dim, rows), {"tokens": tokens}, "attention", dims, fields)

    def check_tiles(kernel: str, tiles: dict[str, Any]) -> None:
        if tiles.get("bf16_operands") != 1 or tiles.get("query_rows") != QUERY_ROWS:
            raise SystemExit(f"{kernel}: the sm_90a policy did not choose the WGMMA form ({tiles})")

    return build_specs(out, "h100_attention", SPECS, only, kernel_of, check_tiles)


# --- check (on the GPU) ------------------------------------------------------------------------------------


def reference(qkv: np.ndarray, keys: np.ndarray, values: np.ndarray, rows: np.ndarray, heads: int,
              head_dim: int) -> np.ndarray:  # fmt: skip
    """Causal GQA of query rows `rows` (position 0) over keys [0, row], float64 (keys and values [T, Hkv, D]),
    the scaled queries rounded to bf16 as the kernel rounds them: [len(rows), heads * head_dim]."""
    kv_heads = keys.shape[1]
    scale = np.float32(head_dim**-0.5)
    q = from_bf16_bits(to_bf16_bits(qkv[rows, : heads * head_dim] * scale)).astype(np.float64)
    q = q.reshape(len(rows), kv_heads, heads // kv_heads, head_dim)  # query head h = g * group + j
    out = np.empty((len(rows), kv_heads, heads // kv_heads, head_dim))
    for i, row in enumerate(rows):
        scores = np.einsum("gjd,sgd->gjs", q[i], keys[: row + 1])
        p = np.exp(scores - scores.max(axis=2, keepdims=True))
        out[i] = np.einsum("gjs,sgd->gjd", p / p.sum(axis=2, keepdims=True), values[: row + 1])
    return out.reshape(len(rows), heads * head_dim)


def _sdpa_ms(torch: Any, q_bits: np.ndarray, k_bits: np.ndarray, v_bits: np.ndarray) -> float:
    """torch's SDPA (its fastest backend for these shapes) on [1, H, T, D] / [1, Hkv, T, D] bf16."""
    q = _torch_bf16(torch, q_bits).permute(1, 0, 2).unsqueeze(0)
    k, v = (_torch_bf16(torch, bits).permute(1, 0, 2).unsqueeze(0) for bits in (k_bits, v_bits))

    def run() -> Any:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    return torch_median_ms(torch, run)


def check_spec(driver: Any, module: Any, name: str, spec: dict[str, Any], kernel: dict[str, Any], torch: Any,
               seed: int) -> dict[str, Any]:  # fmt: skip
    """Run one spec: numerics, then timing; the result's "ok" is the numerics verdict."""
    from tessera.runtime.gpu_module import KernelScalar

    tokens, heads, kv_heads, head_dim, rows = (
        spec["tokens"], kernel["heads"], kernel["kv_heads"], kernel["head_dim"], kernel["rows"]
    )  # fmt: skip
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    qkv = rng.standard_normal((tokens, (heads + 2 * kv_heads) * head_dim), dtype=np.float32) * np.float32(1.5)
    new = qkv[:, heads * head_dim :].reshape(tokens, 2, kv_heads, head_dim)
    caches = [np.full((rows, kv_heads, head_dim), 0xFFFF, np.uint16) for _ in range(2)]  # NaN past the tokens
    for cache, part in zip(caches, (new[:, 0], new[:, 1]), strict=True):
        cache[:tokens] = to_bf16_bits(np.ascontiguousarray(part))
    out_init = np.full((tokens, heads * head_dim), 0xFFFF, np.uint16)
    with DeviceBuffers(driver) as device:
        out_dev = device(out_init)
        args = [device(qkv), device(caches[0]), device(caches[1]), out_dev]
        args += [KernelScalar(tokens, "i32"), KernelScalar(0, "i32")]
        function = module.function(spec["kernel"])
        grid = (heads, -(-tokens // QUERY_ROWS), 1)

        def launch() -> None:
            driver.launch(function, grid, (kernel["threads"], 1, 1), kernel["shared_bytes"], args)

        launch()
        _wait(driver, f"{name}: the first launch")
        out = np.empty((tokens, heads * head_dim), np.uint16)
        driver.download(out_dev, out)
        got = from_bf16_bits(out)
        sampled = rng.choice(tokens, min(SAMPLED_ROWS, tokens), replace=False)
        checked = np.unique(np.concatenate([[0, tokens - 1], sampled]))
        keys, values = (from_bf16_bits(cache[:tokens]).astype(np.float64) for cache in caches)
        want = reference(qkv, keys, values, checked, heads, head_dim)
        result: dict[str, Any] = {
            "tokens": tokens, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "rel_error": relative_error(got[checked].astype(np.float64), want),
            "reference": f"float64, {len(checked)} query rows x {heads} heads",
            "all_finite": bool(np.isfinite(got).all()), "tolerance": TOLERANCE,
        }  # fmt: skip
        result["ok"] = result["all_finite"] and result["rel_error"] <= TOLERANCE
        flops = 4.0 * tokens * tokens * head_dim * heads / 2
        result["ms"] = _median_ms(driver, launch)
        result["tflops"] = flops / result["ms"] / 1e9
        if torch is not None:
            q_bits = to_bf16_bits(np.ascontiguousarray(qkv[:, : heads * head_dim])).reshape(tokens, heads, head_dim)
            result["sdpa_ms"] = _sdpa_ms(torch, q_bits, caches[0][:tokens], caches[1][:tokens])
            result["sdpa_tflops"] = flops / result["sdpa_ms"] / 1e9
            result["vs_sdpa"] = result["sdpa_ms"] / result["ms"]  # > 1: faster than SDPA
        return result


def run(out: Path, seed: int | None = None) -> dict[str, Any]:
    """check's summary (benchmarks/hopper.py tabulates it)."""
    return check_specs(out, "h100_attention", seed, _torch(), check_spec, _describe)


def check(out: Path, seed: int | None = None) -> int:
    return 0 if run(out, seed)["ok"] else 1


def _describe(name: str, result: dict[str, Any]) -> str:
    line = f"{name}: rel error {result['rel_error']:.2e} ({result['reference']}) <= {TOLERANCE:g}: "
    line += f"{'ok' if result['ok'] else 'FAIL'}; {result['ms']:.3f} ms, {result['tflops']:.1f} TFLOP/s"
    if "sdpa_ms" in result:
        line += f"; SDPA {result['sdpa_ms']:.3f} ms, {result['sdpa_tflops']:.1f} TFLOP/s"
        line += f"; tessera / SDPA speed {result['vs_sdpa']:.3f}x"
    return line


if __name__ == "__main__":
    sys.exit(kernel_benchmark_main("h100_attention.py", __doc__, OUT, build, check))

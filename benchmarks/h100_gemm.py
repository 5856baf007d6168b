"""The Hopper GEMM (kernels/gemm_blocks.py through lowering/nvvm/wgmma.py, sm_90a: TMA + mbarriers + WGMMA) on
an H100 or H200: one command there.

    python benchmarks/h100_gemm.py build     # here (MLIR 22, LLVM, ptxas): out/h100_gemm/ (git-ignored)
    python3 benchmarks/h100_gemm.py [check]  # there, from a copy of the checkout with out/h100_gemm carried
                                             # (numpy, cuda-bindings; torch for the cuBLAS baseline)

build writes one cubin and its PTX per kernel (N, K, epilogue, y dtype, bias, row_scale: tokens is a launch
argument, so specs that differ only in tokens share one) and spec.json: the specs, the kernel each runs,
its launch (384 threads, the dynamic shared bytes of its ring, grid (ceil(N / block_n), ceil(tokens /
block_m)) from its tiles, its tensor maps' boxes) and what ptxas reported. Shapes are named tokens x N x K; TOOLCHAIN.md's "8192×5120×20480 (Nano-12B MLP up)"
is tokens x K x N, i.e. mlp_up here (N = 20480, K = 5120), and its "8192×20480×5120 (MLP down)" is mlp_down.

check, per spec: random bf16 x [tokens, K] and W [N, K] (numpy, rounded to bf16 bits), bias / row_scale
f32 when the kernel takes them, y prefilled with NaN (an element the kernel never writes fails), the two
CUtensorMaps encoded as program.json's tensor maps say (lowering/nvvm/wgmma.py), one launch; y against float64 on the same bf16 operands
(every row, or 130 sampled rows when the product is large, plus every element against torch in float32
without TF32 when torch is there), relative error max|y - ref| / max|ref| <= 1e-2 for a bf16 y, 1e-3 for
f32; NaN or inf fails. Then the median of 20 launches (CUDA events) against torch.matmul in bf16 (cuBLAS)
on the same operands (the matmul alone: cuBLAS does no relu2 or row_scale). A launch that does not finish within HANG_SECONDS is reported as a hang. Prints a
line per spec and one JSON line last; exit 1 if any numerics check fails or a kernel hangs or faults.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from checkout import make_tessera_importable

ROOT = Path(__file__).resolve().parent.parent


make_tessera_importable()
OUT = ROOT / "out" / "h100_gemm"
HANG_SECONDS = 60.0
TIMED_RUNS, WARMUP_RUNS = 20, 3
FULL_REFERENCE_FLOPS = 2 * 2**31  # above this, float64 on sampled rows (and torch float32 on all)
SAMPLED_ROWS = 128
TOLERANCE = {"bf16": 1e-2, "f32": 1e-3}

# name: tokens, N, K, epilogue, y dtype, bias, row_scale
SPECS: dict[str, tuple[int, int, int, str, str, bool, bool]] = {
    "store_200x5120x5120": (200, 5120, 5120, "store", "bf16", False, False),
    "store_1024x5120x5120": (1024, 5120, 5120, "store", "bf16", False, False),
    "store_8192x5120x5120": (8192, 5120, 5120, "store", "bf16", False, False),
    "small_200x200x64_bias_scale_f32": (200, 200, 64, "store", "f32", True, True),
    "small_100x200x64_relu2": (100, 200, 64, "relu2", "bf16", False, False),
    "small_200x200x64_accumulate_bias": (200, 200, 64, "accumulate", "f32", True, False),
    "mlp_up_8192x20480x5120_relu2": (8192, 20480, 5120, "relu2", "bf16", False, False),
    "mlp_down_8192x5120x20480": (8192, 5120, 20480, "store", "bf16", False, False),
    # The decode step's GEMVs (one token: tiling/gpu.py gemv_tiles), bound by streaming W.
    "decode_1x22656x5120_in_proj": (1, 22656, 5120, "store", "f32", False, False),
    "decode_1x5120x20480_mlp_down": (1, 5120, 20480, "accumulate", "f32", False, False),
}


def _kernel_name(n: int, k: int, epilogue: str, y_dtype: str, bias: bool, row_scale: bool, gemv: bool) -> str:
    extras = ("_bias" if bias else "") + ("_scale" if row_scale else "")
    return f"{'gemv' if gemv else 'gemm'}_sm90_n{n}_k{k}_{epilogue}_{y_dtype}{extras}"


# --- build (here) ------------------------------------------------------------------------------------------


def build(out: Path, only: list[str] | None = None) -> dict[str, Any]:
    def kernel_of(name: str, spec: tuple[Any, ...]) -> BuiltSpec:
        tokens, n, k, epilogue, y_dtype, bias, row_scale = spec
        dims = {"n": n, "k": k, "epilogue": epilogue, "y_dtype": y_dtype, "x_dtype": "bf16", "bias": int(bias),
                "row_scale": int(row_scale)}  # fmt: skip
        if tokens == 1:  # the decode step's kernel (lowering/decode_kernels.py)
            dims["tokens"] = 1
        fields = {"n": n, "k": k, "epilogue": epilogue, "y_dtype": y_dtype, "bias": bias, "row_scale": row_scale,
                  "kind": "matmul", "dims": dims}  # fmt: skip
        kernel_name = _kernel_name(n, k, epilogue, y_dtype, bias, row_scale, tokens == 1)
        return BuiltSpec(kernel_name, {"tokens": tokens, "n": n, "k": k}, "matmul", dims, fields)

    return build_specs(out, "h100_gemm", SPECS, only, kernel_of)


class BuiltSpec(NamedTuple):
    """What a spec builds: its kernel (named `kernel`, of `kind` with `dims`), the spec's entry in spec.json and
    the kernel's own fields there."""

    kernel: str
    entry: dict[str, Any]
    kind: str
    dims: dict[str, Any]
    fields: dict[str, Any]


def build_specs(out: Path, benchmark: str, specs: Mapping[str, tuple[Any, ...]], only: list[str] | None,
                kernel_of: Callable[[str, tuple[Any, ...]], BuiltSpec],
                check_tiles: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """The Hopper benchmarks' build: each spec's kernel through the compiler's own path (tessera-tile-choose-
    tiles and the footprint for sm_90a under bf16, convert-tessera-tile-to-nvvm, ptxas), its cubin and PTX
    written once (specs that differ only in tokens share one), and spec.json: the specs, each kernel's launch
    (threads, dynamic shared bytes), tiles, cubin digest and what ptxas reported."""
    sys.path.insert(0, str(ROOT / "test" / "kernels"))
    from tile_kernels import tile_kernel

    from tessera.dialects import tile
    from tessera.lowering.convert_tile_to_nvvm import emit_kernel
    from tessera.lowering.nvvm.pipeline import compile_kernels

    unknown = sorted(set(only or []) - set(specs))
    if unknown:
        raise SystemExit(f"unknown spec(s) {', '.join(unknown)}: known are {', '.join(specs)}")
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    kernels: dict[str, Any] = {}
    for name, spec in specs.items():
        if only and name not in only:
            continue
        built = kernel_of(name, spec)
        entries[name] = {**built.entry, "kernel": built.kernel}
        if built.kernel in kernels:
            continue
        tiled = tile_kernel(built.kind, built.dims, "sm_90a", "bf16", name=built.kernel)
        tiles = dict(tile.plain_dict(tiled.tiles)) if tiled.tiles is not None else {}
        if check_tiles is not None:
            check_tiles(built.kernel, tiles)
        kernel = emit_kernel(tiled)
        artifacts = compile_kernels(kernel.text, built.kernel, sass=False)
        (out / f"{built.kernel}.cubin").write_bytes(artifacts.cubin.data)
        (out / f"{built.kernel}.ptx").write_text(artifacts.ptx)
        report = artifacts.cubin.kernels[built.kernel]
        kernels[built.kernel] = {
            **built.fields,
            "threads": kernel.kernel.threads,
            "shared_bytes": kernel.dynamic_shared_bytes,
            "tiles": tiles,
            "tensor_maps": [tensor_map.plain() for tensor_map in kernel.tensor_maps],
            "cubin_sha256": hashlib.sha256(artifacts.cubin.data).hexdigest(),
            "ptxas": {"registers": report.registers, "spill_bytes": report.spill_stores + report.spill_loads},
        }
        print(f"{built.kernel}: {report.registers} registers, {kernel.dynamic_shared_bytes} bytes of dynamic shared")
    manifest = {"arch": "sm_90a", "specs": entries, "kernels": kernels}
    (out / "spec.json").write_text(json.dumps(manifest, indent=1))
    print(f"built {len(kernels)} kernels for {len(entries)} specs into {out}: carry it to the GPU and run "
          f"`python3 benchmarks/{benchmark}.py` there")  # fmt: skip
    return manifest


# --- check (on the GPU) ------------------------------------------------------------------------------------


def to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounded to nearest even (finite inputs)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    if not np.all(np.isfinite(actual)):
        return float("inf")
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-30))


def json_safe(value: Any) -> Any:
    """inf / NaN as strings, so the last line is strict JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    return value


class KernelHang(Exception):
    pass


def _wait(driver: Any, what: str, seconds: float = HANG_SECONDS) -> None:
    """Wait for the null stream by polling an event, so that a deadlocked kernel is reported rather than
    blocking this process in cuCtxSynchronize forever."""
    cu = driver.cu
    event = driver.call("cuEventCreate", cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DISABLE_TIMING))
    driver.call("cuEventRecord", cu.cuEventRecord(event, 0))
    deadline = time.monotonic() + seconds
    try:
        while True:
            (status,) = cu.cuEventQuery(event)
            if status == cu.CUresult.CUDA_SUCCESS:
                return
            if status != cu.CUresult.CUDA_ERROR_NOT_READY:
                driver.call(f"{what} (cuEventQuery)", (status,))
            if time.monotonic() > deadline:
                raise KernelHang(f"{what} did not finish within {seconds:.0f} s")
            time.sleep(0.001)
    finally:
        cu.cuEventDestroy(event)


def _median_ms(driver: Any, launch: Any) -> float:
    cu = driver.cu
    for _ in range(WARMUP_RUNS):
        launch()
    _wait(driver, "warm-up launches")
    # CUDA 12.8 added cuEventElapsedTime_v2; take whichever name this binding has.
    elapsed = getattr(cu, "cuEventElapsedTime", None) or cu.cuEventElapsedTime_v2
    pairs = []
    for _ in range(TIMED_RUNS):
        start = driver.call("cuEventCreate", cu.cuEventCreate(0))
        end = driver.call("cuEventCreate", cu.cuEventCreate(0))
        driver.call("cuEventRecord", cu.cuEventRecord(start, 0))
        launch()
        driver.call("cuEventRecord", cu.cuEventRecord(end, 0))
        pairs.append((start, end))
    _wait(driver, "timed launches")
    times = []
    for start, end in pairs:
        times.append(float(driver.call("cuEventElapsedTime", elapsed(start, end))))
        cu.cuEventDestroy(start)
        cu.cuEventDestroy(end)
    return float(np.median(times))


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _torch_bf16(torch: Any, bits: np.ndarray) -> Any:
    return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).cuda()


def torch_median_ms(torch: Any, run: Callable[[], Any]) -> float:
    """The median of TIMED_RUNS calls of `run` between torch CUDA events, after WARMUP_RUNS (autotuning, where
    the baseline does it, happens there)."""
    for _ in range(WARMUP_RUNS):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(TIMED_RUNS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def _torch_ms(torch: Any, x_bits: np.ndarray, w_bits: np.ndarray) -> float:
    x, w = _torch_bf16(torch, x_bits), _torch_bf16(torch, w_bits)
    return torch_median_ms(torch, lambda: torch.matmul(x, w.T))


def _apply_epilogue(
    acc: np.ndarray, rows: np.ndarray, kernel: dict[str, Any], bias: Any, row_scale: Any, y0: Any
) -> np.ndarray:
    value = acc
    if row_scale is not None:
        value = value * row_scale[rows, None].astype(np.float64)
    if bias is not None:
        value = value + bias[None, :].astype(np.float64)
    if kernel["epilogue"] == "relu2":
        return np.maximum(value, 0.0) ** 2
    if kernel["epilogue"] == "accumulate":
        return value + y0[rows].astype(np.float64)
    return value


class DeviceBuffers:
    """The device copies of one spec's host arrays (`device(host)` uploads one), all freed on leaving; after a
    fault every call fails, so a failed free is ignored: the launch's error is the one reported."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.buffers: list[Any] = []

    def __call__(self, host: np.ndarray) -> Any:
        buffer = self.driver.alloc(host.nbytes)
        self.driver.upload(buffer, host)
        self.buffers.append(buffer)
        return buffer

    def __enter__(self) -> DeviceBuffers:
        return self

    def __exit__(self, *exc: object) -> None:
        from tessera.errors import TesseraError

        for buffer in self.buffers:
            try:
                self.driver.free(buffer)
            except TesseraError:
                pass


def check_spec(
    driver: Any, module: Any, name: str, spec: dict[str, Any], kernel: dict[str, Any], torch: Any, seed: int
) -> dict[str, Any]:
    """Run one spec: numerics, then timing; the result's "ok" is the numerics verdict."""
    from tessera.runtime.gpu_module import KernelScalar

    tokens, n, k, y_dtype = spec["tokens"], spec["n"], spec["k"], kernel["y_dtype"]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    x_bits = to_bf16_bits(rng.standard_normal((tokens, k), dtype=np.float32))
    w_bits = to_bf16_bits(rng.standard_normal((n, k), dtype=np.float32) / np.float32(np.sqrt(k)))
    bias = rng.standard_normal(n, dtype=np.float32) if kernel["bias"] else None
    row_scale = rng.uniform(0.5, 2.0, tokens).astype(np.float32) if kernel["row_scale"] else None
    y_host_dtype = np.uint16 if y_dtype == "bf16" else np.float32
    if kernel["epilogue"] == "accumulate":
        y0 = rng.standard_normal((tokens, n), dtype=np.float32)
        y_init = to_bf16_bits(y0) if y_dtype == "bf16" else y0
        y0 = from_bf16_bits(y_init) if y_dtype == "bf16" else y0
    else:
        y0 = None
        y_init = np.full((tokens, n), 0xFFFF if y_dtype == "bf16" else np.nan, dtype=y_host_dtype)  # NaN

    with DeviceBuffers(driver) as device:
        x_dev, w_dev, y_dev = device(x_bits), device(w_bits), device(y_init)
        args: list[Any] = [x_dev, w_dev]  # a GEMV's; the TMA GEMM takes tensor maps in their place
        if kernel["tensor_maps"]:
            args = [driver.encode_tensor_map_2d(buffer.pointer, rows=rows, cols=k, dtype=entry["dtype"],
                                                box_rows=entry["box_rows"], box_cols=entry["box_cols"],
                                                swizzle=entry["swizzle"])
                    for buffer, rows, entry in zip((x_dev, w_dev), (tokens, n), kernel["tensor_maps"],
                                                   strict=True)]  # fmt: skip
        args += [device(bias)] if bias is not None else []
        args += [device(row_scale)] if row_scale is not None else []
        args += [y_dev, KernelScalar(tokens, "i32"), KernelScalar(0, "i32")]
        function = module.function(spec["kernel"])
        tiles = kernel["tiles"]
        if "columns" in tiles:  # a GEMV: a wave per `columns` columns of W
            grid = (-(-n // tiles["columns"]), 1, 1)
        else:
            grid = (-(-n // tiles["block_n"]), -(-tokens // tiles["block_m"]), 1)
        block = (kernel["threads"], 1, 1)

        def launch() -> None:
            driver.launch(function, grid, block, kernel["shared_bytes"], args)

        launch()
        _wait(driver, f"{name}: the first launch")
        y_raw = np.empty((tokens, n), dtype=y_host_dtype)
        driver.download(y_dev, y_raw)
        y = from_bf16_bits(y_raw) if y_dtype == "bf16" else y_raw

        full = 2 * tokens * n * k <= FULL_REFERENCE_FLOPS
        if full:
            rows = np.arange(tokens)
        else:  # the first and last rows (the M tail) and a random sample between
            rows = np.unique(
                np.concatenate([[0, tokens - 1], rng.choice(tokens, min(SAMPLED_ROWS, tokens), replace=False)])
            )
        x64, w64 = from_bf16_bits(x_bits[rows]).astype(np.float64), from_bf16_bits(w_bits).astype(np.float64)
        expected = _apply_epilogue(x64 @ w64.T, rows, kernel, bias, row_scale, y0)
        result: dict[str, Any] = {
            "tokens": tokens,
            "n": n,
            "k": k,
            "epilogue": kernel["epilogue"],
            "y_dtype": y_dtype,
            "rel_error": relative_error(y[rows].astype(np.float64), expected),
            "reference": "float64, all rows" if full else f"float64, {len(rows)} rows",
            "tolerance": TOLERANCE[y_dtype],
        }
        del x64, w64, expected
        if not full:
            result["all_finite"] = bool(np.all(np.isfinite(y)))
            if torch is not None:  # every element, against torch in float32 (TF32 off)
                torch.backends.cuda.matmul.allow_tf32 = False
                xt, wt = _torch_bf16(torch, x_bits).float(), _torch_bf16(torch, w_bits).float()
                all_rows = np.arange(tokens)
                acc = torch.matmul(xt, wt.T).double().cpu().numpy()
                del xt, wt
                expected_all = _apply_epilogue(acc, all_rows, kernel, bias, row_scale, y0)
                result["rel_error_all_vs_torch_f32"] = relative_error(y.astype(np.float64), expected_all)
                del acc, expected_all
        errors = [result["rel_error"], result.get("rel_error_all_vs_torch_f32", 0.0)]
        result["ok"] = bool(result.get("all_finite", True)) and all(e <= result["tolerance"] for e in errors)

        flops = 2.0 * tokens * n * k
        result["ms"] = _median_ms(driver, launch)
        result["tflops"] = flops / result["ms"] / 1e9
        result["weight_tb_s"] = n * k * 2 / result["ms"] / 1e9  # W's bf16 bytes streamed (a GEMV's bound)
        if torch is not None:
            result["torch_ms"] = _torch_ms(torch, x_bits, w_bits)
            result["torch_tflops"] = flops / result["torch_ms"] / 1e9
            result["vs_torch"] = result["torch_ms"] / result["ms"]  # > 1: faster than cuBLAS
        return result


def run(out: Path, seed: int | None = None) -> dict[str, Any]:
    """check's summary (benchmarks/hopper.py tabulates it)."""
    return check_specs(out, "h100_gemm", seed, _torch(), check_spec, _describe)


def check(out: Path, seed: int | None = None) -> int:
    return 0 if run(out, seed)["ok"] else 1


def _describe(name: str, result: dict[str, Any]) -> str:
    line = f"{name}: rel error {result['rel_error']:.2e} ({result['reference']}"
    if "rel_error_all_vs_torch_f32" in result:
        line += f"; all elements vs torch f32 {result['rel_error_all_vs_torch_f32']:.2e}"
    line += f") <= {result['tolerance']:g}: {'ok' if result['ok'] else 'FAIL'}; "
    line += f"{result['ms']:.3f} ms, {result['tflops']:.1f} TFLOP/s"
    if "torch_ms" in result:
        line += f"; torch.matmul {result['torch_ms']:.3f} ms, {result['torch_tflops']:.1f} TFLOP/s"
        line += f"; tessera / cuBLAS speed {result['vs_torch']:.2f}x"
    return line


CheckSpec = Callable[[Any, Any, str, dict[str, Any], dict[str, Any], Any, int], dict[str, Any]]


def check_specs(out: Path, benchmark: str, seed: int | None, torch: Any, check_spec: CheckSpec,
                describe: Callable[[str, dict[str, Any]], str]) -> dict[str, Any]:  # fmt: skip
    """A built benchmark's specs on CUDA device 0 (the Hopper benchmarks' check): each spec's kernel loaded
    from its cubin (checked against spec.json's digest), `check_spec` run, a line per spec (`describe`, or
    the failure), one JSON line last; returns that summary ("ok": whether every spec passed). A hang ends
    the process (the context is stuck behind the kernel); a fault ends the loop (it poisons the context)."""
    from tessera.errors import TesseraError
    from tessera.runtime.cuda import CudaDriver

    manifest_path = out / "spec.json"
    if not manifest_path.is_file():
        print(f"{manifest_path} is missing: run `python benchmarks/{benchmark}.py build` where MLIR is, and carry "
              f"out/{benchmark}")  # fmt: skip
        return {"benchmark": benchmark, "ok": False, "error": f"{manifest_path} is missing"}
    manifest = json.loads(manifest_path.read_text())
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    summary: dict[str, Any] = {"benchmark": benchmark, "seed": seed, "specs": {}}
    try:
        driver = CudaDriver(0)
    except TesseraError as error:
        summary |= {"ok": False, "error": str(error)}
        print(json.dumps(summary))
        return summary
    summary["device"] = driver.device_name()
    summary["torch"] = None if torch is None else f"{torch.__version__} ({torch.cuda.get_device_name()})"
    modules: dict[str, Any] = {}
    ok = True
    for name, spec in manifest["specs"].items():
        kernel = manifest["kernels"][spec["kernel"]]
        try:
            if spec["kernel"] not in modules:
                cubin = (out / f"{spec['kernel']}.cubin").read_bytes()
                if hashlib.sha256(cubin).hexdigest() != kernel["cubin_sha256"]:
                    raise TesseraError(f"{spec['kernel']}.cubin does not match spec.json: rebuild")
                modules[spec["kernel"]] = driver.load_module(cubin)
            result = check_spec(driver, modules[spec["kernel"]], name, spec, kernel, torch, seed)
        except KernelHang as hang:
            summary["specs"][name] = {"ok": False, "error": f"hang: {hang}"}
            print(f"{name}: HANG ({hang})", flush=True)
            print(json.dumps(json_safe({**summary, "ok": False})), flush=True)
            os._exit(1)
        except TesseraError as error:
            result = {"ok": False, "error": str(error)}
        summary["specs"][name] = result
        ok = ok and result["ok"]
        if "error" in result:
            print(f"{name}: FAILED {result['error']}", flush=True)
            if any(sticky in result["error"] for sticky in ("ILLEGAL", "MISALIGNED", "LAUNCH_FAILED", "HARDWARE")):
                break  # a fault poisons the context: later specs would fail the same way
            continue
        print(describe(name, result), flush=True)
    summary["ok"] = ok
    print(json.dumps(json_safe(summary)))
    return summary


def kernel_benchmark_main(script: str, doc: str, out: Path, build: Callable[[Path, list[str] | None], Any],
                          check: Callable[[Path, int | None], int],
                          extra: Callable[[argparse.Namespace], None] | None = None,
                          parser: argparse.ArgumentParser | None = None) -> int:  # fmt: skip
    """The command line of a Hopper kernel benchmark: `build` here (--only some specs), `check` there (--seed);
    `extra` runs after a build with the options (a script's own flags, added to `parser`)."""
    parser = parser or argparse.ArgumentParser(prog=f"benchmarks/{script}", description=doc.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["build", "check"], default="check")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--only", nargs="*", help="build only these specs (default: all)")
    parser.add_argument("--seed", type=int, help="check: the inputs' seed (default: fresh; printed in the JSON)")
    options = parser.parse_args()
    if options.mode == "build":
        build(options.out, options.only)
        if extra is not None:
            extra(options)
        return 0
    return check(options.out, options.seed)


if __name__ == "__main__":
    sys.exit(kernel_benchmark_main("h100_gemm.py", __doc__, OUT, build, check))

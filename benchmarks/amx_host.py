"""The AMX checks and benchmarks, for a host whose CPU has AMX (the GPU machine's Xeon): one command there.

    python benchmarks/amx_host.py prepare     # here: builds everything into out/amx_host (needs the test
                                              # extra for transformers, and the MLIR toolchain)
    python3 benchmarks/amx_host.py check      # there, from a copy of the checkout with out/amx_host carried
                                              # (numpy; torch for the oneDNN baseline): prints one JSON line

prepare writes:
    tiny_bf16/, tiny_fp32/   a random tiny Nemotron-H checkpoint compiled for x86 in bf16 and in fp32
    hf.npz                   its prompt, Hugging Face's float32 logits and greedy tokens (transformers here)
    mid_bf16/                configs/nemotron_h_mid.yaml in bf16, weights drawn from a seed at load
    mid_config.json, wheels/ its HF config, and transformers' wheels for Python 3.12 (the end-to-end
                             baseline, installed offline there)
    gemm/                    the 2048x5120x20480 GEMM (M x K x N) as its AMX and AVX-512 variants
    openmp/libiomp5.so       the OpenMP runtime the native programs fork on (the host's torch has libgomp)
check shows, and fails (exit 1) unless:
    the bf16 artifact runs its GEMMs on AMX ("amx GEMMs" in the variant line) and its prompt logits are
    within 2e-2 relative of HF's float32 logits; the fp32 artifact within 1e-4 (a float32 path);
    and measures, in the same run: Tessera's AMX GEMM vs torch.matmul in bf16 (oneDNN, with the ISA its
    verbose log names), the host's read bandwidth and oneDNN's GEMM rates (x86_vs_transformers'
    measure_machine), and the mid model's prefill / decode tokens per second on AMX, on AVX-512, and with
    transformers on torch CPU (bf16); Tessera's prefill also as a fraction of oneDNN's bf16 GEMM rate, its
    decode of the weight-streaming limit, and each thread's busy share in an instrumented prefill.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from checkout import download_transformers, install_wheels, make_tessera_importable

ROOT = Path(__file__).resolve().parent.parent


make_tessera_importable()
OUT = ROOT / "out" / "amx_host"
GEMM = {"m": 2048, "k": 5120, "n": 20480}
SEED = 0  # the random checkpoint's weights (test/test_hf_contract.make_checkpoint)


def prepare(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "test"))
    from test_hf_contract import PROMPT, hf_reference, make_checkpoint
    from xdsl.dialects.builtin import ModuleOp

    from tessera import toolchain
    from tessera.dialects.upstream import upstream_text
    from tessera.lowering.convert_tile_to_x86 import amx_kernel, emit_kernel, gemm_kernel, kernels_module, lower_to_x86
    from tessera.lowering.x86.pipeline import AMX_LLVM_PIPELINE, LLVM_PIPELINE
    from tessera.tiling import x86_gemm

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(out / "checkpoint", SEED)
    prompt = list(PROMPT)
    logits, tokens = hf_reference(checkpoint, prompt, uses_cache=True)
    np.savez(out / "hf.npz", prompt=np.array(prompt), logits=logits, tokens=np.array(tokens))
    compile_ = [sys.executable, "-m", "tessera.tools.tessera_compile", "--target", "x86", "-q"]
    for precision in ("bf16", "fp32"):
        target = out / f"tiny_{precision}"
        subprocess.run([*compile_, str(checkpoint), "--precision", precision, "-o", str(target)], check=True)
    mid = ROOT / "configs" / "nemotron_h_mid.yaml"
    subprocess.run([*compile_, str(mid), "--precision", "bf16", "-o", str(out / "mid_bf16")], check=True)

    spec = x86_gemm.GemmSpec(n=GEMM["n"], k=GEMM["k"], epilogue="store", weight_dtype="bf16", x_dtype="bf16")
    tiles = x86_gemm.choose_tiles(spec)
    (out / "gemm").mkdir(exist_ok=True)
    amx = ModuleOp([amx_kernel("gemm", spec, tiles)])
    lower_to_x86(amx, amx=True)
    amx_function = amx.body.block.first_op
    assert amx_function is not None
    variants = {
        "amx": (upstream_text(amx_function), AMX_LLVM_PIPELINE, toolchain.X86_64_AMX),
        "avx512": (emit_kernel(gemm_kernel("gemm", spec, tiles)), LLVM_PIPELINE, toolchain.X86_64_AVX512),
    }
    for name, (function, pipeline, cpu) in variants.items():
        llvm_ir = toolchain.mlir_to_llvm_ir(kernels_module([function]), pipeline)
        toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=cpu)], out / "gemm" / f"{name}.so")
    (out / "gemm" / "spec.json").write_text(json.dumps({**GEMM, "nr": tiles.nr}))
    from tessera.runtime.openmp import library_path

    (out / "openmp").mkdir(exist_ok=True)
    shutil.copy2(library_path(), out / "openmp" / "libiomp5.so")
    # The end-to-end baseline there is transformers on its torch; the host reaches no registry, so the
    # wheels (Python 3.12, this project's pins) travel with the rest and install offline there.
    from tessera.frontend.config import load_model
    from tessera.model.config import hf_config_dict

    (out / "mid_config.json").write_text(json.dumps(hf_config_dict(load_model(str(mid)).config)))
    download_transformers(out / "wheels")
    print(f"prepared {out}: carry it to the AMX host and run `python3 benchmarks/amx_host.py check` there")


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    if not np.all(np.isfinite(actual)):
        return float("inf")
    return float(np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-30))


def _session(path: Path, isa: str):  # type: ignore[no-untyped-def]
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.x86_session import X86Session

    os.environ["TESSERA_ISA"] = isa
    return X86Session.open(read_artifact(path), kernel_mode="aot")


def _median_seconds(run, repeats: int) -> float:  # type: ignore[no-untyped-def]
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _contract(out: Path, amx: bool) -> dict[str, object]:
    hf = np.load(out / "hf.npz")
    prompt = [int(t) for t in hf["prompt"]]
    results: dict[str, object] = {}
    for precision, isa, bound in (("bf16", "amx" if amx else "avx512", 2e-2), ("fp32", "avx512", 1e-4)):
        session = _session(out / f"tiny_{precision}", isa)
        error = _relative_error(session.prefill(prompt), hf["logits"])
        results[precision] = {"kernels": session.kernels.how, "relative_error": error, "bound": bound}
        results[f"{precision}_ok"] = error <= bound and (precision != "bf16" or "amx GEMMs" in session.kernels.how)
    return results


def _gemm(out: Path, threads: int, amx: bool) -> dict[str, object]:
    import ctypes

    from tessera.runtime.native import memref_args
    from tessera.runtime.weights import bf16_bits, pack_amx_vnni, pack_panels

    spec = json.loads((out / "gemm" / "spec.json").read_text())
    m, k, n, nr = spec["m"], spec["k"], spec["n"], spec["nr"]
    rng = np.random.default_rng(0)
    x = bf16_bits(rng.standard_normal((m, k), np.float32))
    weight = rng.standard_normal((n, k), np.float32) / np.sqrt(k)
    flops = 2.0 * m * n * k
    measured: dict[str, object] = {}
    variants = [("amx", pack_amx_vnni(weight))] if amx else []  # AMX code faults on a CPU without it
    for name, packed in [*variants, ("avx512", pack_panels(weight, nr, "bf16"))]:
        function = getattr(ctypes.CDLL(str(out / "gemm" / f"{name}.so")), "gemm__amx" if name == "amx" else "gemm")
        y = np.empty((m, n), np.float32)
        args = [*memref_args(x), *memref_args(packed), *memref_args(y)]
        panels = -(-n // nr)
        bounds = np.linspace(0, panels, threads + 1).astype(int)

        def run(function=function, args=args, bounds=bounds) -> None:  # type: ignore[no-untyped-def]
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda i: function(*args, ctypes.c_int64(bounds[i]), ctypes.c_int64(bounds[i + 1])),
                              range(threads)))  # fmt: skip

        seconds = _median_seconds(run, 5)
        measured[name] = {"ms": seconds * 1e3, "tflops": flops / seconds / 1e12}
    verbose = subprocess.run(
        [sys.executable, "-c", _TORCH_GEMM.format(m=m, k=k, n=n, threads=threads)],
        capture_output=True, text=True, env={**os.environ, "ONEDNN_VERBOSE": "1"},
    )  # fmt: skip
    lines = verbose.stdout.strip().splitlines()
    torch_ms = float(lines[-1]) if lines else float("nan")
    isa = sorted(
        {
            part
            for line in lines
            if line.startswith("onednn_verbose")
            for part in line.split(",")
            if "avx" in part or "amx" in part
        }
    )
    measured["torch_bf16"] = {"ms": torch_ms, "tflops": flops / torch_ms / 1e9, "onednn_isa": isa}
    if amx:
        measured["amx_vs_torch"] = torch_ms / measured["amx"]["ms"]  # type: ignore[index]
    return measured


_TORCH_GEMM = """
import time, torch
torch.set_num_threads({threads})
a = torch.randn({m}, {k}, dtype=torch.bfloat16); b = torch.randn({k}, {n}, dtype=torch.bfloat16)
torch.matmul(a, b)
times = []
for _ in range(5):
    start = time.perf_counter(); torch.matmul(a, b); times.append(time.perf_counter() - start)
times.sort(); print(times[2] * 1e3)
"""


def _end_to_end(out: Path, amx: bool, threads: int) -> dict[str, object]:
    from x86_vs_transformers import measure_machine, model_costs

    prompt = list(range(1, 513))
    config = json.loads((out / "mid_config.json").read_text())
    machine = measure_machine(len(prompt), config["hidden_size"], config["intermediate_size"], threads)
    costs = model_costs(out / "mid_bf16", len(prompt), 64)
    measured: dict[str, object] = {"machine": machine}
    for isa in ("amx", "avx512") if amx else ("avx512",):
        session = _session(out / "mid_bf16", isa)

        def prefill(session=session) -> None:  # type: ignore[no-untyped-def]
            session.reset()
            session.prefill(prompt)

        prefill_s = _median_seconds(prefill, 3)
        start = time.perf_counter()
        for token in range(64):
            session.decode(token)
        decode_s = time.perf_counter() - start
        profiler = session.start_profiling()
        prefill()
        prefill_tps, decode_tps = len(prompt) / prefill_s, 64 / decode_s
        measured[isa] = {
            "kernels": session.kernels.how,
            "prefill_tokens_per_s": prefill_tps,
            "decode_tokens_per_s": decode_tps,
            "prefill_of_onednn_bf16_gemm_rate": prefill_tps
            * costs["prefill_flops_per_token"]
            / machine["gemm_flops_per_s"]["bf16"],
            "decode_of_weight_streaming_limit": decode_tps * costs["decode_bytes"] / machine["read_bytes_per_s"],
            "prefill_thread_busy": profiler.summary()["prefill"]["thread_busy"],
        }
    return measured


def _transformers(out: Path, threads: int) -> dict[str, object]:
    """transformers' NemotronH on torch CPU, bf16, on the mid config (its own random weights: a timing)."""
    site = out / "site"
    error = install_wheels(out / "wheels", site)
    if error is not None:
        return {"error": error}
    code = _HF_E2E.format(site=str(site), config=str(out / "mid_config.json"), threads=threads)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_HF_E2E = """
import json, sys, time
sys.path.insert(0, {site!r})
import torch, transformers
torch.set_num_threads({threads})
fields = {{k: v for k, v in json.load(open({config!r})).items() if k not in ("architectures", "model_type")}}
torch.manual_seed(0)
model = transformers.NemotronHForCausalLM(transformers.NemotronHConfig(**fields)).to(torch.bfloat16).eval()
ids = torch.arange(1, 513).unsqueeze(0)
def seconds(run):
    run(); times = []
    for _ in range(3):
        start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
    return sorted(times)[1]
gen = lambda n: model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
with torch.no_grad():
    prefill = seconds(lambda: model(ids, use_cache=True))
    one, many = seconds(lambda: gen(1)), seconds(lambda: gen(17))
print(json.dumps({{"prefill_tokens_per_s": 512 / prefill, "decode_tokens_per_s": 16 / (many - one),
                  "torch": torch.__version__, "transformers": transformers.__version__}}))
"""


def check(out: Path) -> int:
    from tessera.runtime.cpu_features import AMX, cpu_flags

    carried = out / "openmp" / "libiomp5.so"
    if carried.is_file() and not (Path(sys.prefix) / "lib" / "libiomp5.so").is_file():
        os.environ.setdefault("TESSERA_OPENMP_LIB", str(carried))

    threads = os.cpu_count() or 1
    amx = AMX <= cpu_flags()
    result: dict[str, object] = {"host": _cpu_model(), "date": time.strftime("%Y-%m-%d"), "threads": threads}
    result["amx"] = amx  # without it the AMX parts are left out and the check fails, after the rest ran
    result["contract"] = _contract(out, amx)
    result["gemm_2048x5120x20480_bf16"] = _gemm(out, threads, amx)
    result["mid_bf16_end_to_end"] = {**_end_to_end(out, amx, threads), "transformers": _transformers(out, threads)}
    print(json.dumps(result))
    contract = result["contract"]
    return 0 if amx and contract["bf16_ok"] and contract["fp32_ok"] else 1  # type: ignore[index]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("prepare", "check"))
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    if options.step == "prepare":
        prepare(options.out)
    else:
        sys.exit(check(options.out))


if __name__ == "__main__":
    main()

"""Tessera's x86 target against Hugging Face transformers on torch CPU, same weights, same run (not a test),
and both against what this machine can do.

    python benchmarks/x86_vs_transformers.py [MODEL_YAML] [--prompt 512] [--new-tokens 32] [--precision fp32 bf16]

A random checkpoint of MODEL_YAML (default configs/nemotron_h_mid.yaml: hidden 1024, 8 layers mixing M, *
and -) is written with save_pretrained, compiled with `tessera-compile --target x86`, and both run greedy
generation from the same prompt. Prefill: the prompt in one call (tokens/s). Decode: tokens/s of greedy
generation after the prompt, (N - 1) / (time to generate N - time to generate 1), so prefill is excluded
the same way for both. Each system runs in its own process (torch's OpenMP threads keep spinning after
its calls and would steal the cores from the other); torch gets the same 2 threads Tessera's runtime uses.

The machine, measured in the same run (its own process, torch with 2 threads): the read bandwidth (the best
of torch.sum over 1 GiB of float32 and torch.mv streaming a 1 GiB float32 matrix) and oneDNN's GEMM rate
(torch.matmul, [prompt x hidden] @ [hidden x intermediate], fp32 and bf16). Against them:
    decode  tokens/s over the weight-streaming limit: bandwidth / bytes a token reads — every weight of
            the compiled program once (the embedding table: one row), the SSM and conv state read and
            written, the KV cache read up to the mean decode position
    prefill the model's FLOP rate — 2 * (the GEMM weights' elements; MoE experts at top_k / experts) per
            token, plus attention's 4 * head_dim * heads * (position + 1) per token and layer — over
            oneDNN's GEMM rate in the same precision
Prints a markdown table with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _median_seconds(run, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def hf_checkpoint(model_yaml: Path, directory: Path) -> None:
    import torch
    import transformers

    from tessera.frontend.config import load_model
    from tessera.model.config import hf_config_dict

    spec = load_model(str(model_yaml))
    torch.manual_seed(0)
    fields = {k: v for k, v in hf_config_dict(spec.config).items() if k not in ("architectures", "model_type")}
    config = transformers.NemotronHConfig(**fields)
    transformers.NemotronHForCausalLM(config).eval().save_pretrained(directory)


def measure_hf(checkpoint: Path, prompt: list[int], new_tokens: int, precision: str, repeats: int) -> dict[str, object]:
    import torch
    import transformers

    torch.set_num_threads(2)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = transformers.NemotronHForCausalLM.from_pretrained(checkpoint, dtype=dtype).eval()
    ids = torch.tensor([prompt])

    def generate(count: int) -> None:
        model.generate(
            ids, max_new_tokens=count, min_new_tokens=count, do_sample=False, eos_token_id=None, pad_token_id=0
        )

    with torch.no_grad():
        model(ids, use_cache=True)  # warm-up
        prefill = _median_seconds(lambda: model(ids, use_cache=True), repeats)
        generate(2)
        one = _median_seconds(lambda: generate(1), repeats)
        many = _median_seconds(lambda: generate(new_tokens), repeats)
    return {
        "prefill_tps": len(prompt) / prefill,
        "decode_tps": (new_tokens - 1) / (many - one),
        "kernels": f"torch {torch.__version__}",
    }


def measure_tessera(artifact: Path, prompt: list[int], new_tokens: int, repeats: int) -> dict[str, object]:
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.x86_session import X86Session

    session = X86Session.open(read_artifact(artifact))

    def prefill() -> np.ndarray:
        session.reset()
        return session.prefill(prompt)

    def generate(count: int) -> None:
        logits = prefill()[-1]
        for _ in range(count - 1):
            logits = session.decode(int(np.argmax(logits)))

    prefill()  # warm-up (first calls page in weights)
    prefill_s = _median_seconds(prefill, repeats)
    generate(2)
    one = _median_seconds(lambda: generate(1), repeats)
    many = _median_seconds(lambda: generate(new_tokens), repeats)
    return {
        "prefill_tps": len(prompt) / prefill_s,
        "decode_tps": (new_tokens - 1) / (many - one),
        "kernels": session.kernels.how,
    }


_MACHINE = """
import json, time, torch
torch.set_num_threads({threads})
def best(run, nbytes_or_flops, repeats=5):
    run(); run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
    return nbytes_or_flops / min(times)
x = torch.ones(1 << 28)
a = torch.ones(16384, 16384); v = torch.ones(16384)
bandwidth = max(best(lambda: x.sum(), 4 << 28), best(lambda: torch.mv(a, v), 4 * a.numel()))
del x, a
m, k, n = {m}, {k}, {n}
rates = {{}}
for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
    p, q = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    rates[name] = best(lambda: torch.matmul(p, q), 2.0 * m * k * n)
print(json.dumps({{"read_bytes_per_s": bandwidth, "gemm_flops_per_s": rates, "gemm": [m, k, n]}}))
"""


def measure_machine(prompt: int, hidden: int, intermediate: int, threads: int = 2) -> dict[str, Any]:
    """This machine's read bandwidth and oneDNN's fp32 / bf16 GEMM rates (torch on `threads`, own process)."""
    code = _MACHINE.format(m=prompt, k=hidden, n=intermediate, threads=threads)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def model_costs(artifact: Path, prompt: int, new_tokens: int) -> dict[str, float]:
    """Bytes one decoded token reads and FLOPs one prompt token costs, from the compiled program.json."""
    program = json.loads((artifact / "x86" / "program.json").read_text())
    element = {"f32": 4, "bf16": 2, "i64": 8}

    def weight_bytes(name: str) -> int:
        entry = program["weights"][name]
        size = 2 if entry.get("packing", {}).get("dtype") == "bf16" else 4
        if name == "embedding.weight":  # a decode step gathers one row
            return int(entry["shape"][-1]) * size
        return int(np.prod(entry["shape"])) * size

    mean_position = prompt + new_tokens / 2
    state_bytes = 0.0
    for entry in program["states"].values():
        full = float(np.prod(entry["shape"])) * element[entry["dtype"]]
        if entry["kind"] in ("k_cache", "v_cache"):
            state_bytes += full * mean_position / entry["shape"][0]
        else:
            state_bytes += 2 * full  # read and written back
    flops = 0.0
    for launch in program["programs"]["prefill"]["launches"]:
        record = program["kernels"][launch["kernel"]]
        dims = record["dims"]
        if launch["kind"] == "matmul":
            flops += 2.0 * np.prod(program["weights"][launch["args"][1]["weight"]]["shape"])
        elif launch["kind"] == "moe_experts":
            share = dims["top_k"] / dims["experts"]
            for arg in launch["args"]:
                if "weight" in arg:
                    flops += 2.0 * np.prod(program["weights"][arg["weight"]]["shape"]) * share
        elif launch["kind"] == "attention":
            flops += 4.0 * dims["head_dim"] * dims["num_heads"] * (prompt + 1) / 2
    return {
        "decode_bytes": sum(weight_bytes(name) for name in program["weights"]) + state_bytes,
        "prefill_flops_per_token": flops,
    }


def _in_process(system: str, path: Path, args: argparse.Namespace, precision: str) -> dict[str, object]:
    """One system's measurement in a fresh process (its JSON result is the last stdout line)."""
    command = [sys.executable, __file__, args.model, "--worker", system, str(path), "--precision", precision]
    command += ["--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(ROOT / "configs" / "nemotron_h_mid.yaml"))
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, 1000, size=args.prompt)]
    if args.worker:
        system, path = args.worker
        if system == "tessera":
            result = measure_tessera(Path(path), prompt, args.new_tokens, args.repeats)
        else:
            result = measure_hf(Path(path), prompt, args.new_tokens, args.precision[0], args.repeats)
        print(json.dumps(result))
        return

    import torch

    from tessera.frontend.config import load_model

    config = load_model(args.model).config
    machine = measure_machine(args.prompt, config.hidden_size, config.intermediate_size)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "hf"
        hf_checkpoint(Path(args.model), checkpoint)
        for precision in args.precision:
            artifact = Path(scratch) / f"out-{precision}"
            command = [sys.executable, "-m", "tessera.tools.tessera_compile", str(checkpoint), "--target", "x86"]
            command += [
                "--precision",
                precision,
                "--max-seq-len",
                str(args.prompt + args.new_tokens + 8),
                "-o",
                str(artifact),
                "-q",
            ]
            subprocess.run(command, check=True, env={**os.environ})
            ours = _in_process("tessera", artifact, args, precision)
            theirs = _in_process("hf", checkpoint, args, precision)
            rows.append((precision, ours, theirs, model_costs(artifact, args.prompt, args.new_tokens)))
    name = Path(args.model).stem
    bandwidth = machine["read_bytes_per_s"]
    print(
        f"\n{name}, prompt {args.prompt} tokens, {args.new_tokens} new tokens; {_cpu_name()}, 2 threads; {date.today()}"
    )
    print(
        f"Tessera kernels: {rows[0][1]['kernels']}; transformers {__import__('transformers').__version__}, torch {torch.__version__}"
    )
    rates = ", ".join(f"{p} {r / 1e9:.0f} GFLOP/s" for p, r in machine["gemm_flops_per_s"].items())
    print(f"Machine: read bandwidth {bandwidth / 1e9:.1f} GB/s; oneDNN GEMM {machine['gemm']}: {rates}\n")
    print(
        "| precision | Tessera prefill tok/s | HF prefill tok/s | ratio | of oneDNN GEMM rate "
        "| Tessera decode tok/s | HF decode tok/s | ratio | of weight-streaming limit |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for precision, ours, theirs, costs in rows:
        prefill_rate = float(ours["prefill_tps"]) * costs["prefill_flops_per_token"]  # type: ignore[arg-type]
        limit = bandwidth / costs["decode_bytes"]
        print(
            f"| {precision} | {ours['prefill_tps']:.0f} | {theirs['prefill_tps']:.0f} "
            f"| {ours['prefill_tps'] / theirs['prefill_tps']:.2f}x "  # type: ignore[operator]
            f"| {prefill_rate / machine['gemm_flops_per_s'][precision]:.0%} "
            f"({prefill_rate / 1e9:.0f} GFLOP/s) "
            f"| {ours['decode_tps']:.1f} | {theirs['decode_tps']:.1f} "
            f"| {ours['decode_tps'] / theirs['decode_tps']:.2f}x "  # type: ignore[operator]
            f"| {float(ours['decode_tps']) / limit:.0%} (limit {limit:.1f} tok/s) |"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()

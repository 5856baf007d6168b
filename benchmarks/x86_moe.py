"""Tessera's MoE experts and combine (kernels/moe.py, lowered for x86) against transformers' NemotronHExperts.

    python benchmarks/x86_moe.py [--reps N] [--precision fp32 bf16]

One routed-expert layer call, from the hidden states and the router's ids and weights to the weighted sum of
the experts' outputs: Tessera's moe_experts (a program per expert, the experts split in two halves over 2
Python threads, as the runtime splits them) then moe_combine (tokens split likewise), against HF's
NemotronHExperts.forward (its eager experts loop, the fastest here) on torch with 2 threads, same weights and routing. fp32: both in float32. bf16:
Tessera reads the experts' weights packed as bfloat16 and computes in float32 (its bf16 precision); HF runs
the module in bfloat16. Each row is the best of 3 rounds of --reps calls, the sides taking turns by rounds
after a pause (torch's OpenMP threads spin for a while after each call). Prints a markdown table with the
machine and date; GFLOP/s counts the two products' 4 T K F L multiply-adds.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from x86_gemm import THREADS, as_a_session_runs, best_times, machine
from xdsl.dialects.builtin import DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, Block, Region

from tessera.dialects import tile
from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_tile_to_x86 import emit_kernel, kernels_module
from tessera.lowering.x86.pipeline import build_library
from tessera.passes.tile_choose_tiles import choose_tiles
from tessera.runtime.weights import pack_panels

# (label, experts, top_k, ffn, latent, tokens): the mid MoE config's layer, and Nemotron-3-Nano-30B-A3B's expert
# shapes with 32 of its 128 experts (the slots per expert of a 512-token prompt at T = 128: 24).
CASES = (
    ("mid (E 16, K 4, F 1024, L 1024)", 16, 4, 1024, 1024, (512, 1)),
    ("30B-A3B experts (32 of 128, K 6, F 1856, L 2688)", 32, 6, 1856, 2688, (512, 128, 1)),
)


def tiled_kernel(kind: str, dims: dict[str, int | str], precision: str, grid: int) -> tile.KernelOp:
    """The x86 `tessera.tile.kernel` of `kind`, tiled by tessera-tile-choose-tiles as the compiler does."""
    properties: dict[str, Attribute] = {
        "sym_name": StringAttr(f"{kind}_{precision}"),
        "kind": StringAttr(kind),
        "dims": DictionaryAttr(
            {k: StringAttr(v) if isinstance(v, str) else IntegerAttr(v, i64) for k, v in dims.items()}
        ),
        "parallel": StringAttr("tokens"),
        "grid": IntegerAttr(grid, i64),
    }
    kernel = tile.KernelOp(properties=properties, regions=[Region(Block())])
    choose_tiles(ModuleOp([kernel]), "x86", precision)
    kernel.detach()
    return kernel


def split(pool: ThreadPoolExecutor, kernel: Callable[..., None], args: list[np.ndarray], extent: int) -> None:
    bounds = [extent * t // THREADS for t in range(THREADS + 1)]
    futures = [pool.submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(THREADS)]
    for future in futures:
        future.result()


def run_tessera(pool: ThreadPoolExecutor, kernels: tuple[Callable[..., None], ...], args: list[list[np.ndarray]],
                extents: tuple[int, ...]) -> None:  # fmt: skip
    """The experts, then the combine, each split over the threads."""
    for kernel, kernel_args, extent in zip(kernels, args, extents, strict=True):
        split(pool, kernel, kernel_args, extent)


def run_hf(module: torch.nn.Module, x: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> None:
    with torch.no_grad():
        module(x, ids, weights)


def hf_experts(experts: int, ffn: int, latent: int, up: np.ndarray, down: np.ndarray, dtype: torch.dtype):  # type: ignore[no-untyped-def]
    """HF's module with these weights, in its eager experts loop: on torch CPU the fastest of its experts
    implementations (mid layer, T 512, 2 threads: eager 47 / 17 ms in fp32 / bf16, grouped_mm 53 / 18,
    batched_mm 12.6 / 4.9 s)."""
    import transformers
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHExperts

    config = transformers.NemotronHConfig(n_routed_experts=experts, hidden_size=latent, moe_intermediate_size=ffn,
                                          moe_latent_size=None, mlp_hidden_act="relu2")  # fmt: skip
    config._experts_implementation = "eager"
    module = NemotronHExperts(config).eval()
    with torch.no_grad():
        module.up_proj.copy_(torch.from_numpy(up))
        module.down_proj.copy_(torch.from_numpy(down))
    return module.to(dtype)


def rows(precision: str, reps: int, pool: ThreadPoolExecutor, scratch: Path) -> list[str]:
    out = []
    for label, experts, top_k, ffn, latent, token_counts in CASES:
        dims: dict[str, int | str] = {"num_experts": experts, "top_k": top_k, "ffn": ffn, "latent": latent}
        experts_kernel = as_a_session_runs(tiled_kernel("moe_experts", {**dims, "x_dtype": "f32"}, precision, experts))
        combine_kernel = tiled_kernel("moe_combine", {**dims, "epilogue": "store"}, precision, 0)
        text = kernels_module([emit_kernel(experts_kernel), emit_kernel(combine_kernel)])
        library = build_library(text, scratch / f"moe_{experts}_{precision}.so")
        run_experts, run_combine = (
            library.kernel(experts_kernel.sym_name.data),
            library.kernel(f"moe_combine_{precision}"),
        )
        tiles = plain_dict(experts_kernel.tiles)  # type: ignore[arg-type]
        rng = np.random.default_rng(0)
        up = (rng.standard_normal((experts, ffn, latent)) / np.sqrt(latent)).astype(np.float32)
        down = (rng.standard_normal((experts, latent, ffn)) / np.sqrt(ffn)).astype(np.float32)
        weight_dtype = "bf16" if precision == "bf16" else "f32"
        packed_up, packed_down = (
            pack_panels(up, int(tiles["nr"]), weight_dtype),
            pack_panels(down, int(tiles["nr"]), weight_dtype),
        )
        torch_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        module = hf_experts(experts, ffn, latent, up, down, torch_dtype)
        for tokens in token_counts:
            x = rng.standard_normal((tokens, latent), dtype=np.float32)
            ids = np.argsort(rng.random((tokens, experts)), axis=1)[:, :top_k].astype(np.int64)
            weights = rng.uniform(0.1, 1.0, (tokens, top_k)).astype(np.float32)
            contrib = np.empty((tokens, top_k * latent), np.float32)
            y = np.empty((tokens, latent), np.float32)

            layer: list[list[np.ndarray]] = [[x, ids, packed_up, packed_down, contrib], [contrib, weights, y]]
            ours = partial(run_tessera, pool, (run_experts, run_combine), layer, (experts, tokens))
            x_t, ids_t, w_t = torch.from_numpy(x).to(torch_dtype), torch.from_numpy(ids), torch.from_numpy(weights)
            theirs = partial(run_hf, module, x_t, ids_t, w_t.to(torch_dtype))
            ours_s, theirs_s = best_times([ours, theirs], reps)
            flops = 4 * tokens * top_k * ffn * latent
            rates = f"{flops / ours_s / 1e9:.0f} / {flops / theirs_s / 1e9:.0f}"
            out.append(f"| {label} | {precision} | {tokens} | {ours_s * 1e3:.3f} | {theirs_s * 1e3:.3f} | "
                       f"{theirs_s / ours_s:.2f} | {rates} |")  # fmt: skip
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    print(f"x86 MoE experts + combine, {datetime.datetime.now():%Y-%m-%d %H:%M}, {machine()}\n")
    print("| layer | precision | T | Tessera ms | HF ms | HF / Tessera | Tessera / HF GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(THREADS) as pool:
        for precision in args.precision:
            rows(precision, args.reps, pool, Path(scratch))


if __name__ == "__main__":
    main()

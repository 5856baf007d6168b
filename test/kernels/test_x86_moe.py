"""The x86 MoE kernels (written once in kernels/moe.py) built for this CPU and run against the reference: the
expert-major experts and the combine against float64 numpy (reference.common.mlp_relu2), the router against
reference/moe.py's route.

One library holds every kernel of the module (built once); inputs are random draws from each test's seed (conftest).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from router_cases import ROUTERS, router_case
from tile_kernels import tile_kernel

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_tile_to_x86 import avx2_kernel, emit_kernel
from tessera.lowering.x86.pipeline import build_library
from tessera.reference.common import mlp_relu2
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_bits, bf16_to_f32, pack_panels

TOLERANCE = 1e-5  # max |error| / max |reference|


@dataclass(frozen=True)
class ExpertDims:
    num_experts: int
    top_k: int
    ffn: int
    latent: int
    x_dtype: str = "f32"  # "f32" or "bf16" (x passed as bfloat16 bits)

    def dims(self) -> dict[str, int | str]:
        return {"num_experts": self.num_experts, "top_k": self.top_k, "ffn": self.ffn, "latent": self.latent,
                "x_dtype": self.x_dtype}  # fmt: skip


# Odd L / F (masked last columns, partial last panels), E in {4, 8, 16}, K in {1, 2, 3}, bf16 x.
DIMS = {
    "e4k1_tiny": ExpertDims(4, 1, ffn=10, latent=12),
    "e8k2_mid": ExpertDims(8, 2, ffn=40, latent=72),
    "e16k3_wide": ExpertDims(16, 3, ffn=96, latent=64),
    "e4k3_tiny_bf16": ExpertDims(4, 3, ffn=10, latent=12, x_dtype="bf16"),
    "e8k2_mid_bf16": ExpertDims(8, 2, ffn=40, latent=72, x_dtype="bf16"),
    # L above the GEMM's K block (1024): the up product in two K blocks; F = 790 one block whose k steps end
    # in a tail past the unrolled ones; neither a multiple of the panel (64) or the copy block
    "e4k2_long": ExpertDims(4, 2, ffn=790, latent=1550),
}
TOKENS = (1, 5, 37, 200)
# The weights the kernels read in each precision (bf16: packed as bfloat16, as the runtime packs them).
WEIGHT_DTYPES = {"fp32": "f32", "bf16": "bf16"}


def experts_kernel(name: str, d: ExpertDims, precision: str = "fp32"):  # type: ignore[no-untyped-def]
    return tile_kernel("moe_experts", d.dims(), "x86", precision, name=f"{name}_experts_{precision}")


def emit_all(dims: dict[str, ExpertDims]) -> str:
    """The experts (in both precisions), the combine and the routers, through the x86 lowering."""
    text = []
    for name, d in dims.items():
        text += [emit_kernel(experts_kernel(name, d, precision)) for precision in WEIGHT_DTYPES]
        for epilogue in ("store", "accumulate"):
            combine = {"num_experts": d.num_experts, "top_k": d.top_k, "latent": d.latent, "epilogue": epilogue}
            text.append(emit_kernel(tile_kernel("moe_combine", combine, "x86", name=f"{name}_{epilogue}")))
    for name in ROUTERS:
        dims = router_case(name, 1, np.random.default_rng(0)).dims
        text.append(emit_kernel(tile_kernel("moe_router", dims, "x86", name=f"router_{name}")))
    return "\n".join(text)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> KernelLibrary:
    return build_library(emit_all(DIMS), tmp_path_factory.mktemp("moe") / "moe.so")


@dataclass
class Case:
    """Random inputs of one layer call and the float64 results expected."""

    x: np.ndarray  # f32, or bf16 bits
    ids: np.ndarray  # [T, K] int64, distinct per token; some experts get no tokens
    weights: np.ndarray  # [T, K] f32
    up: np.ndarray  # packed as the kernel reads it
    down: np.ndarray
    contrib: np.ndarray  # [T, K*L] float64: each slot's expert output
    out: np.ndarray  # [T, L] float64: sum_j weights * contrib

    @property
    def args(self) -> list[np.ndarray]:
        return [self.x, self.ids, self.up, self.down]


def make_case(d: ExpertDims, tokens: int, rng: np.random.Generator, precision: str = "fp32") -> Case:
    e, k, f, lat = d.num_experts, d.top_k, d.ffn, d.latent
    x = x_arg = rng.standard_normal((tokens, lat), dtype=np.float32)
    if d.x_dtype == "bf16":  # the kernel sees the rounded activations
        x_arg = bf16_bits(x)
        x = bf16_to_f32(x_arg)
    # A random quarter of the experts (at least one where K allows) is never chosen.
    allowed = rng.permutation(e)[: max(k, e - max(1, e // 4))]
    ids = allowed[np.argsort(rng.random((tokens, len(allowed))), axis=1)[:, :k]].astype(np.int64)
    weights = rng.uniform(0.1, 1.0, (tokens, k)).astype(np.float32)
    up = (rng.standard_normal((e, f, lat)) / np.sqrt(lat)).astype(np.float32)
    down = (rng.standard_normal((e, lat, f)) / np.sqrt(f)).astype(np.float32)
    dtype = WEIGHT_DTYPES[precision]
    nr = int(plain_dict(experts_kernel("probe", d, precision).tiles)["nr"])  # type: ignore[arg-type]
    packed_up, packed_down = pack_panels(up, nr, dtype), pack_panels(down, nr, dtype)
    if dtype == "bf16":  # the reference multiplies the rounded weights
        up, down = bf16_to_f32(bf16_bits(up)), bf16_to_f32(bf16_bits(down))
    contrib = np.zeros((tokens, k, lat))
    for expert in np.unique(ids):
        rows, slots = np.nonzero(ids == expert)
        contrib[rows, slots] = mlp_relu2(x[rows], up[expert], down[expert])
    out = np.einsum("tk,tkl->tl", weights.astype(np.float64), contrib)
    return Case(x_arg, ids, weights, packed_up, packed_down, contrib.reshape(tokens, k * lat), out)


def assert_close(y: np.ndarray, expected: np.ndarray) -> None:
    assert not np.isnan(y).any(), "NaN in the output (or an element left unwritten)"
    error = np.abs(y - expected).max() / max(np.abs(expected).max(), 1e-30)
    assert error <= TOLERANCE, f"relative error {error:.2e}"


def unwritten(case: Case) -> np.ndarray:
    return np.full(case.contrib.shape, np.nan, dtype=np.float32)


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("name", DIMS)
def test_experts_and_combine_match_float64(library: KernelLibrary, rng: np.random.Generator, name: str,
                                           tokens: int) -> None:  # fmt: skip
    d = DIMS[name]
    case = make_case(d, tokens, rng)
    contrib = unwritten(case)  # every slot is routed: all must be written
    library.kernel(f"{name}_experts_fp32")(*case.args, contrib, 0, d.num_experts)
    assert_close(contrib, case.contrib)
    out = np.full((tokens, d.latent), np.nan, dtype=np.float32)
    library.kernel(f"{name}_store")(contrib, case.weights, out, 0, tokens)
    assert_close(out, case.out)
    residual = np.asarray(rng.standard_normal(out.shape, dtype=np.float32))
    out = residual.copy()
    library.kernel(f"{name}_accumulate")(contrib, case.weights, out, 0, tokens)
    assert_close(out, case.out + residual)


@pytest.mark.parametrize("name", ["e8k2_mid", "e16k3_wide", "e4k3_tiny_bf16"])
def test_expert_and_token_ranges_split_the_work(library: KernelLibrary, rng: np.random.Generator, name: str) -> None:
    """Experts [0, s) then [s, E): the first call writes exactly the slots routed to its experts. Tokens
    [0, u) then [u, T) in the combine: the first call writes only its tokens' rows."""
    d = DIMS[name]
    tokens = 37
    case = make_case(d, tokens, rng)
    split = int(rng.integers(case.ids.min() + 1, case.ids.max() + 1))  # slots routed to both sides (K >= 2)
    contrib = unwritten(case)
    experts = library.kernel(f"{name}_experts_fp32")
    experts(*case.args, contrib, split, d.num_experts)
    mine = np.repeat(case.ids >= split, d.latent, axis=1)
    assert np.isnan(contrib[~mine]).all(), "a slot of another expert was written"
    assert_close(contrib[mine], case.contrib[mine])
    experts(*case.args, contrib, 0, split)
    assert_close(contrib, case.contrib)
    experts(*case.args, contrib, split, split)  # an empty range writes nothing (and frees what it allocates)
    assert_close(contrib, case.contrib)

    cut = int(rng.integers(1, tokens))
    out = np.full((tokens, d.latent), np.nan, dtype=np.float32)
    combine = library.kernel(f"{name}_store")
    combine(contrib, case.weights, out, cut, tokens)
    assert np.isnan(out[:cut]).all()
    assert_close(out[cut:], case.out[cut:])
    combine(contrib, case.weights, out, 0, cut)
    assert_close(out, case.out)


def test_two_threads_on_disjoint_ranges(library: KernelLibrary, rng: np.random.Generator) -> None:
    name, tokens = "e16k3_wide", 200
    d = DIMS[name]
    case = make_case(d, tokens, rng)
    contrib = unwritten(case)
    experts = library.kernel(f"{name}_experts_fp32")
    halves = [(0, d.num_experts // 2 - 3), (d.num_experts // 2 - 3, d.num_experts)]
    run_threads([lambda lo=lo, hi=hi: experts(*case.args, contrib, lo, hi) for lo, hi in halves])
    assert_close(contrib, case.contrib)
    out = rng.standard_normal((tokens, d.latent), dtype=np.float32)
    expected = case.out + out
    combine = library.kernel(f"{name}_accumulate")
    run_threads(
        [lambda lo=lo, hi=hi: combine(contrib, case.weights, out, lo, hi) for lo, hi in ((0, 77), (77, tokens))]
    )
    assert_close(out, expected)


def run_threads(calls: list) -> None:  # type: ignore[type-arg]
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_ids_of_no_expert_in_range_are_skipped(library: KernelLibrary, rng: np.random.Generator) -> None:
    """Slots whose id is outside [begin, end) (here: -1 and E, as for padding) are neither read nor written."""
    name = "e8k2_mid"
    d = DIMS[name]
    case = make_case(d, 5, rng)
    ids = case.ids.copy()
    ids[1, 0], ids[3, 1] = -1, d.num_experts
    contrib = unwritten(case)
    library.kernel(f"{name}_experts_fp32")(case.x, ids, case.up, case.down, contrib, 0, d.num_experts)
    skipped = np.repeat((ids < 0) | (ids >= d.num_experts), d.latent, axis=1)
    assert np.isnan(contrib[skipped]).all()
    assert_close(contrib[~skipped], case.contrib[~skipped])


def test_calls_do_not_leak(library: KernelLibrary, rng: np.random.Generator) -> None:
    """Each call frees its slot list and scratch rows (~40 KB here): 1000 calls leave the RSS flat."""
    name = "e16k3_wide"
    d = DIMS[name]
    case = make_case(d, 200, rng)
    contrib = unwritten(case)
    experts = library.kernel(f"{name}_experts_fp32")
    experts(*case.args, contrib, 0, d.num_experts)
    before = resident_bytes()
    for _ in range(1000):
        experts(*case.args, contrib, 0, d.num_experts)
    assert resident_bytes() - before < 8 << 20


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_baseline_x86_64_build(tmp_path: Path, rng: np.random.Generator) -> None:
    """The same kernels compile for the x86-64 baseline (SSE2 only: masked loads, bf16 widening) and agree."""
    dims = {f"base_{name}": DIMS[name] for name in ("e4k1_tiny", "e8k2_mid_bf16")}
    baseline = build_library(emit_all(dims), tmp_path / "baseline.so", host=False)
    for name, d in dims.items():
        tokens = 37
        case = make_case(d, tokens, rng)
        contrib = unwritten(case)
        baseline.kernel(f"{name}_experts_fp32")(*case.args, contrib, 0, d.num_experts)
        assert_close(contrib, case.contrib)
        out = np.full((tokens, d.latent), np.nan, dtype=np.float32)
        baseline.kernel(f"{name}_store")(contrib, case.weights, out, 0, tokens)
        assert_close(out, case.out)


@pytest.mark.parametrize("precision", WEIGHT_DTYPES)
@pytest.mark.parametrize("name", ["e8k2_mid", "e16k3_wide", "e8k2_mid_bf16", "e4k2_long"])
def test_avx2_variant_matches_float64(tmp_path: Path, rng: np.random.Generator, name: str, precision: str) -> None:
    """The experts' AVX2 variant (16-column stripes of each panel, a bf16 x widened once per row block):
    the same weights and slots as the vector kernel, in two expert ranges."""
    d = DIMS[name]
    kernel = avx2_kernel(experts_kernel(name, d, precision))
    library = build_library(emit_kernel(kernel), tmp_path / "avx2.so")
    case = make_case(d, 200, rng, precision)
    contrib = unwritten(case)
    run = library.kernel(kernel.sym_name.data)
    run(*case.args, contrib, d.num_experts // 2, d.num_experts)
    run(*case.args, contrib, 0, d.num_experts // 2)
    assert_close(contrib, case.contrib)


def test_long_dims_span_several_k_blocks() -> None:
    d = DIMS["e4k2_long"]
    tiles = {key: int(value) for key, value in plain_dict(experts_kernel("long", d).tiles).items()}  # type: ignore[arg-type]
    assert tiles["up_kc"] < d.latent and d.ffn % tiles["ku"]
    assert d.latent % tiles["nr"] and d.ffn % tiles["nr"] and d.latent % tiles["block"]


@pytest.mark.parametrize("name", ["e8k2_mid", "e4k3_tiny_bf16"])
def test_bf16_weights(library: KernelLibrary, rng: np.random.Generator, name: str) -> None:
    """Under the bf16 precision the experts read their weights packed as bfloat16 (widened exactly)."""
    d = DIMS[name]
    case = make_case(d, 37, rng, "bf16")
    contrib = unwritten(case)
    library.kernel(f"{name}_experts_bf16")(*case.args, contrib, 0, d.num_experts)
    assert_close(contrib, case.contrib)


def test_an_expert_with_more_slots_than_a_group(library: KernelLibrary, rng: np.random.Generator) -> None:
    """2000 tokens of K = 2 over six experts: about 670 slots each, more than one group's rows (the scan runs
    the group when the slot list is full, then goes on from an empty list)."""
    name = "e8k2_mid"
    d = DIMS[name]
    case = make_case(d, 2000, rng)
    assert np.bincount(case.ids.ravel()).max() > plain_dict(experts_kernel(name, d).tiles)["group"]  # type: ignore[arg-type]
    contrib = unwritten(case)
    library.kernel(f"{name}_experts_fp32")(*case.args, contrib, 0, d.num_experts)
    assert_close(contrib, case.contrib)


def test_footprint_leaves_the_slot_rows_in_main_memory() -> None:
    """The slot list is the only fast-memory scratch; the gathered rows and the products are "global" ones,
    however many features (a Nemotron-3-Nano-sized layer fits a core's L2)."""
    small = experts_kernel("small", DIMS["e4k1_tiny"])
    large = experts_kernel("large", ExpertDims(128, 6, ffn=1856, latent=2688))
    assert 0 < small.footprint.value.data <= large.footprint.value.data <= 2**20  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ROUTERS)
def test_router_matches_the_reference(library: KernelLibrary, rng: np.random.Generator, name: str) -> None:
    """Ids exactly (ties included), weights within 1e-5; tokens [0, u) then [u, T) as two calls."""
    tokens = 37
    want = router_case(name, tokens, rng)
    ids, weights = np.full(want.ids.shape, -1, np.int64), np.full(want.ids.shape, np.nan, np.float32)
    cut = int(rng.integers(0, tokens + 1))
    for begin, end in ((0, cut), (cut, tokens)):
        library.kernel(f"router_{name}")(want.logits, want.bias, ids, weights, begin, end)
    assert np.array_equal(ids, want.ids)
    assert_close(weights, want.weights)

"""The GEMM / GEMV kernels (kernels/gemm.py) lowered for x86, built for this CPU and run against float64 numpy.

One library holds every kernel of the module (built once); inputs are random draws from each test's seed (conftest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from tessera.kernels.gemm import stripe_width
from tessera.lowering.convert_tile_to_x86 import avx2_kernel, emit_kernel, gemm_kernel
from tessera.lowering.x86.pipeline import build_library
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_bits, bf16_to_f32, pack_panels
from tessera.tiling import x86_gemm
from tessera.tiling.x86_gemm import GemmSpec, GemmTiles

TOLERANCE = 1e-5  # max |error| / max |reference|

# name -> spec: odd N and K (masked columns, k tails), N = 1, N a multiple of nr (unmasked stores),
# K > MAX_KC (K blocks: partial sums in y, bias / relu2 on the last block), every epilogue and factor.
SPECS = {
    "odd_store": GemmSpec(301, 72, "store"),
    "tiny_relu2_bias": GemmSpec(10, 12, "relu2", bias=True),
    "one_column": GemmSpec(1, 37, "accumulate", bias=True, row_scale=True),
    "blocked_accumulate": GemmSpec(130, 2100, "accumulate", row_scale=True),
    "blocked_store_bias": GemmSpec(128, 2051, "store", bias=True),
    "blocked_relu2_bf16": GemmSpec(200, 1100, "relu2", bias=True, weight_dtype="bf16"),
    "bf16_scaled": GemmSpec(64, 96, "store", bias=True, row_scale=True, weight_dtype="bf16"),
    "relu2_scaled": GemmSpec(77, 1030, "relu2", row_scale=True),
}
# bf16 activations: x and / or y as bfloat16 bits, with f32 and bf16 weights; masked last panels with a
# partial and skipped 16-column stores (N = 301, 10, 200), unmasked (N = 128), K > MAX_KC (x bf16 across
# K blocks; y bf16 in a single K block).
BF16_SPECS = {
    "x16_odd_store": GemmSpec(301, 72, "store", x_dtype="bf16"),
    "x16_w16_blocked_accumulate": GemmSpec(
        130, 2100, "accumulate", row_scale=True, weight_dtype="bf16", x_dtype="bf16"
    ),
    "y16_tiny_relu2_bias": GemmSpec(10, 12, "relu2", bias=True, y_dtype="bf16"),
    "y16_w16_long_k": GemmSpec(200, 2051, "store", bias=True, row_scale=True, weight_dtype="bf16", y_dtype="bf16"),
    "xy16_w16_odd_relu2": GemmSpec(301, 72, "relu2", bias=True, weight_dtype="bf16", x_dtype="bf16", y_dtype="bf16"),
    "xy16_long_k_store": GemmSpec(128, 1100, "store", x_dtype="bf16", y_dtype="bf16"),
}
ALL_SPECS = SPECS | BF16_SPECS
ROWS = (1, 3, 37)
UNWRITTEN_BF16 = 0xFFFF  # initial bf16 y: a NaN the kernel never stores for finite inputs


@dataclass
class Case:
    """Random inputs of one call and the float64 result expected in y."""

    args: list[np.ndarray]  # x (f32, or bf16 bits), packed weight, [bias], [row_scale]
    y: np.ndarray  # initial y (NaN unless accumulating; float32, or uint16 bf16 bits)
    expected: np.ndarray


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> KernelLibrary:
    return build_library(kernels_text(ALL_SPECS), tmp_path_factory.mktemp("gemm") / "gemm.so")


def kernels_text(specs: dict[str, GemmSpec]) -> str:
    return "\n".join(emit_kernel(gemm_kernel(name, spec)) for name, spec in specs.items())


def pack_weight(weight: np.ndarray, spec: GemmSpec, tiles: GemmTiles) -> np.ndarray:
    return pack_panels(weight, tiles.nr, spec.weight_dtype)


def make_case(spec: GemmSpec, tiles: GemmTiles, rows: int, rng: np.random.Generator) -> Case:
    x = x_arg = rng.standard_normal((rows, spec.k), dtype=np.float32)
    if spec.x_dtype == "bf16":  # the kernel sees the rounded activations
        x_arg = bf16_bits(x)
        x = bf16_to_f32(x_arg)
    weight = rng.standard_normal((spec.n, spec.k), dtype=np.float32)
    packed = pack_weight(weight, spec, tiles)
    if spec.weight_dtype == "bf16":  # the kernel sees the rounded weights
        weight = bf16_to_f32(bf16_bits(weight))
    expected = x.astype(np.float64) @ weight.astype(np.float64).T
    return finish_case(spec, rng, [x_arg, packed], expected)


def finish_case(spec: GemmSpec, rng: np.random.Generator, args: list[np.ndarray], expected: np.ndarray) -> Case:
    """The rest of a case from x and the packed weight and their product: bias, row_scale, the initial y
    and the epilogue, applied to `expected` as the kernel applies them (shared by every GEMM variant)."""
    rows = expected.shape[0]
    if spec.row_scale:
        row_scale = np.asarray(rng.uniform(0.5, 2.0, rows), np.float32)
        expected *= row_scale[:, None]
    if spec.bias:
        bias = rng.standard_normal(spec.n, dtype=np.float32)
        args.append(bias)
        expected += bias
    if spec.row_scale:
        args.append(row_scale)
    y = np.full((rows, spec.n), np.nan, dtype=np.float32)
    if spec.y_dtype == "bf16":
        y = np.full((rows, spec.n), UNWRITTEN_BF16, dtype=np.uint16)
    if spec.epilogue == "accumulate":
        y = rng.standard_normal((rows, spec.n), dtype=np.float32)
        expected += y
    elif spec.epilogue == "relu2":
        expected = np.maximum(expected, 0.0) ** 2
    return Case(args, y, expected)


def assert_close(y: np.ndarray, expected: np.ndarray) -> None:
    if y.dtype == np.uint16:
        assert_close_bf16(y, expected)
        return
    assert not np.isnan(y).any(), "NaN in the output (or an element left unwritten)"
    error = np.abs(y - expected).max() / max(np.abs(expected).max(), 1e-30)
    assert error <= TOLERANCE, f"relative error {error:.2e}"


def assert_close_bf16(bits: np.ndarray, expected: np.ndarray) -> None:
    """bf16 y: within 1 bf16 ulp of the float64 result rounded to bf16, plus the f32 accumulation's
    TOLERANCE (which matters where the sum cancels to a value far below its terms)."""
    assert (bits != UNWRITTEN_BF16).all(), "an element left unwritten (or NaN)"
    rounded = bf16_to_f32(bf16_bits(expected.astype(np.float32))).astype(np.float64)
    _, exponent = np.frexp(rounded)
    ulp = np.where(rounded == 0, 0.0, np.ldexp(1.0, exponent - 8))  # 8 significant bits
    error = np.abs(bf16_to_f32(bits) - rounded)
    allowed = ulp + TOLERANCE * max(np.abs(expected).max(), 1e-30)
    worst = np.unravel_index(np.argmax(error - allowed), error.shape)
    assert (error <= allowed).all(), f"y{list(worst)} = {bf16_to_f32(bits)[worst]}, expected {rounded[worst]}"


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("name", ALL_SPECS)
def test_gemm_matches_float64(library: KernelLibrary, rng: np.random.Generator, name: str, rows: int) -> None:
    spec = ALL_SPECS[name]
    tiles = x86_gemm.choose_tiles(spec)
    case = make_case(spec, tiles, rows, rng)
    library.kernel(name)(*case.args, case.y, 0, x86_gemm.panel_count(spec, tiles))
    assert_close(case.y, case.expected)


@pytest.mark.parametrize("rows", [200, 1043])  # 33 x 6 + 2; 2 x 516 (mc) + 6 + 4 + 1
@pytest.mark.parametrize(
    "name", ["blocked_accumulate", "blocked_relu2_bf16", "odd_store", "x16_w16_blocked_accumulate", "y16_w16_long_k"]
)
def test_gemm_many_rows(library: KernelLibrary, rng: np.random.Generator, name: str, rows: int) -> None:
    spec = ALL_SPECS[name]
    tiles = x86_gemm.choose_tiles(spec)
    case = make_case(spec, tiles, rows, rng)
    library.kernel(name)(*case.args, case.y, 0, x86_gemm.panel_count(spec, tiles))
    assert_close(case.y, case.expected)


@pytest.mark.parametrize(
    "name",
    ["odd_store", "blocked_accumulate", "blocked_relu2_bf16", "x16_w16_blocked_accumulate", "xy16_w16_odd_relu2"],
)
def test_panel_ranges_split_the_work(library: KernelLibrary, rng: np.random.Generator, name: str) -> None:
    """Two calls on [0, p) and [p, P) give the full result; each writes its own columns only."""
    spec = ALL_SPECS[name]
    tiles = x86_gemm.choose_tiles(spec)
    panels = x86_gemm.panel_count(spec, tiles)
    assert panels >= 2
    split = int(rng.integers(1, panels))
    case = make_case(spec, tiles, 37, rng)
    kernel = library.kernel(name)
    initial = case.y.copy()
    kernel(*case.args, case.y, split, panels)
    cut = split * tiles.nr
    np.testing.assert_array_equal(case.y[:, :cut], initial[:, :cut])  # untouched (NaN or the residual)
    assert_close(case.y[:, cut:], case.expected[:, cut:])
    kernel(*case.args, case.y, 0, split)
    assert_close(case.y, case.expected)


@pytest.mark.parametrize("name", ["odd_store", "xy16_w16_odd_relu2"])
def test_empty_panel_range_writes_nothing(library: KernelLibrary, rng: np.random.Generator, name: str) -> None:
    spec = ALL_SPECS[name]
    case = make_case(spec, x86_gemm.choose_tiles(spec), 3, rng)
    initial = case.y.copy()
    library.kernel(name)(*case.args, case.y, 2, 2)
    np.testing.assert_array_equal(case.y, initial)


@pytest.fixture(scope="module")
def avx2_library(tmp_path_factory: pytest.TempPathFactory) -> KernelLibrary:
    """Every spec's AVX2 variant, built for this CPU (its blocking runs anywhere; the artifact's for x86-64-v3)."""
    text = "\n".join(emit_kernel(avx2_kernel(gemm_kernel(name, spec))) for name, spec in ALL_SPECS.items())
    return build_library(text, tmp_path_factory.mktemp("gemm_avx2") / "gemm_avx2.so")


@pytest.mark.parametrize("rows", (*ROWS, 200))  # 200 = 33 x 6 + 2: whole blocks in stripes, a 2-row tail
@pytest.mark.parametrize("name", ALL_SPECS)
def test_avx2_variant_matches_float64(avx2_library: KernelLibrary, rng: np.random.Generator, name: str,
                                      rows: int) -> None:  # fmt: skip
    """The AVX2 variant reads the same packed weights over the same grid: its stripes, the skipped ones past N
    (N = 301, 10, 200) and every row tail give the vector kernel's results."""
    spec = ALL_SPECS[name]
    tiles = x86_gemm.choose_tiles(spec)
    case = make_case(spec, tiles, rows, rng)
    panels = x86_gemm.panel_count(spec, tiles)
    split = panels // 2
    kernel = avx2_library.kernel(f"{name}__avx2")
    kernel(*case.args, case.y, split, panels)  # in two ranges, as the runtime splits a grid
    kernel(*case.args, case.y, 0, split)
    assert_close(case.y, case.expected)


def test_stripes_fit_the_register_file() -> None:
    """AVX-512 keeps whole 64-column panels; AVX2 cuts them so that at most 12 ymm accumulators are live."""
    tiles = x86_gemm.choose_tiles(SPECS["odd_store"])
    assert {rows: stripe_width(rows, vars(tiles)) for rows in (6, 4, 2, 1)} == {6: 64, 4: 64, 2: 64, 1: 64}
    avx2 = x86_gemm.avx2_tiles(vars(tiles))
    assert {rows: stripe_width(rows, avx2) for rows in (6, 4, 2, 1)} == {6: 16, 4: 16, 2: 32, 1: 64}


def test_baseline_x86_64_build(tmp_path: Path, rng: np.random.Generator) -> None:
    """The same kernels compile for the x86-64 baseline (SSE2 only) and compute the same results (a bf16
    y's masked last panel must not need an f32 -> bf16 conversion libcall)."""
    specs = {
        "base_f32": SPECS["odd_store"],
        "base_bf16": SPECS["blocked_relu2_bf16"],
        "base_xy16": BF16_SPECS["xy16_w16_odd_relu2"],
    }
    baseline = build_library(kernels_text(specs), tmp_path / "baseline.so", host=False)
    for name, spec in specs.items():
        tiles = x86_gemm.choose_tiles(spec)
        case = make_case(spec, tiles, 37, rng)
        baseline.kernel(name)(*case.args, case.y, 0, x86_gemm.panel_count(spec, tiles))
        assert_close(case.y, case.expected)


def test_pack_weight_layout(rng: np.random.Generator) -> None:
    spec = GemmSpec(70, 5, "store")
    tiles = x86_gemm.choose_tiles(spec)
    weight = rng.standard_normal((70, 5), dtype=np.float32)
    packed = pack_weight(weight, spec, tiles)
    assert packed.shape == x86_gemm.packed_weight_shape(spec, tiles) == (2, 5, tiles.nr)
    assert packed.dtype == np.float32 and packed.flags.c_contiguous and packed.ctypes.data % 64 == 0
    for n in (0, 63, 64, 69):
        np.testing.assert_array_equal(packed[n // tiles.nr, :, n % tiles.nr], weight[n])
    assert not packed[1, :, 70 - tiles.nr :].any()  # the N tail is zero


def test_bf16_packing_rounds_to_nearest_even() -> None:
    values = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, np.inf], dtype=np.float32)
    expected = np.array([1.0, 1 + 2**-6, 1 + 2**-7, -2.5, np.inf], dtype=np.float32)
    np.testing.assert_array_equal(bf16_to_f32(bf16_bits(values)), expected)
    spec = GemmSpec(5, 3, "store", weight_dtype="bf16")
    packed = pack_weight(np.ones((5, 3), dtype=np.float32), spec, x86_gemm.choose_tiles(spec))
    assert packed.dtype == np.uint16 and packed[0, 0, 0] == 0x3F80 and packed[0, 0, 5] == 0
    assert packed.ctypes.data % 64 == 0 and packed.flags.c_contiguous


def test_bf16_y_is_rounded_to_nearest_even(library: KernelLibrary, rng: np.random.Generator) -> None:
    """A bf16 y holds exactly weights.bf16_bits of the f32 result: ties to even, no flush of denormals,
    overflow to inf, NaN kept (also in the masked last panel)."""
    spec = BF16_SPECS["y16_w16_long_k"]  # y = row_scale * (x @ W^T) + bias; x = 0 leaves y = bias exactly
    tiles = x86_gemm.choose_tiles(spec)
    bias = rng.standard_normal(spec.n, dtype=np.float32)
    special = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8 + 2**-20), 1e-40, -3e-39, 3.4e38, -np.inf, np.nan, 0.0, 2**-120]
    bias[:10] = bias[-10:] = special
    weight = rng.standard_normal((spec.n, spec.k), dtype=np.float32)
    y = np.zeros((2, spec.n), dtype=np.uint16)
    x, row_scale = np.zeros((2, spec.k), np.float32), np.ones(2, np.float32)
    library.kernel("y16_w16_long_k")(x, pack_weight(weight, spec, tiles), bias, row_scale, y, 0, 4)
    np.testing.assert_array_equal(y, np.broadcast_to(bf16_bits(bias), y.shape))


def test_tiles_fit_the_registers_and_caches() -> None:
    for spec in SPECS.values():
        tiles = x86_gemm.choose_tiles(spec)
        assert tiles.nr % 16 == 0 and tiles.mr * tiles.nr // 16 <= 28 and tiles.mc % tiles.mr == 0
        assert tiles.kc <= spec.k and tiles.kc <= x86_gemm.MAX_KC
        assert x86_gemm.panel_count(spec, tiles) == -(-spec.n // tiles.nr)
        assert 0 < x86_gemm.footprint_bytes(spec, tiles) <= 2**20  # the L2 of one znver5 core
    for spec in BF16_SPECS.values():  # a bf16 y keeps its sums in registers: one K block
        tiles = x86_gemm.choose_tiles(spec)
        assert tiles.kc == spec.k if spec.y_dtype == "bf16" else tiles.kc <= x86_gemm.MAX_KC


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="epilogue"):
        GemmSpec(4, 4, "gelu")
    with pytest.raises(ValueError, match="dtype"):
        GemmSpec(4, 4, "store", weight_dtype="f16")
    with pytest.raises(ValueError, match="x dtype"):
        GemmSpec(4, 4, "store", x_dtype="f16")
    with pytest.raises(ValueError, match="y dtype"):
        GemmSpec(4, 4, "store", y_dtype="i8")
    with pytest.raises(ValueError, match="accumulate"):
        GemmSpec(4, 4, "accumulate", y_dtype="bf16")
    blocked = GemmSpec(64, 2048, "store", y_dtype="bf16")
    with pytest.raises(ValueError, match="single K block"):
        gemm_kernel("g", blocked, GemmTiles(nr=64, mr=6, kc=1024, mc=516, ku=4))
    with pytest.raises(ValueError, match="positive"):
        GemmSpec(0, 4, "store")
    with pytest.raises(ValueError, match="multiple of 16"):
        GemmTiles(nr=24, mr=4, kc=8, mc=8, ku=4)

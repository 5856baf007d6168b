"""The x86 Mamba-2 mixer kernels (conv_silu, ssd_scan, ssd_step and gated_rmsnorm, written once in
kernels/mamba.py, through the x86 lowering) built to machine code and run against reference/mamba2.py.

Each test draws random inputs from its seed, prefills outputs with NaN (so that an unwritten element fails), compares
by relative error (max abs error / max abs reference) against the float64 numpy reference, and splits the
parallel range over two calls (two threads in some tests) as the runtime does. Libraries are built once per
module. `python test/kernels/test_x86_mamba.py` times the prefill scan (see _benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from tile_kernels import tile_kernel

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from tessera.dialects import tile
from tessera.lowering.convert_tile_to_x86 import avx2_kernel, emit_kernel
from tessera.lowering.x86.pipeline import build_library
from tessera.reference.common import softplus
from tessera.reference.mamba2 import (
    Mamba2Params,
    Mamba2State,
    Mamba2Weights,
    _split_xbc,
    causal_conv,
    gated_rmsnorm,
    mamba2_decode,
    mamba2_prefill,
    ssd_chunked,
)
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_bits, bf16_to_f32

F32_TOLERANCE = 1e-5
BF16_TOLERANCE = 1e-2


@dataclass(frozen=True)
class MambaDims:
    """One mixer's sizes (kernels/mamba.py's notation) and the dtypes its kernels are built for."""

    num_heads: int
    head_dim: int
    n_groups: int
    state_size: int
    conv_kernel: int
    chunk_size: int
    epsilon: float
    time_step_min: float
    state_dtype: str = "f32"
    out_dtype: str = "f32"

    @property
    def inner(self) -> int:  # I
        return self.num_heads * self.head_dim

    @property
    def group_state(self) -> int:  # G N
        return self.n_groups * self.state_size

    @property
    def conv_channels(self) -> int:  # C
        return self.inner + 2 * self.group_state

    @property
    def proj_width(self) -> int:  # W
        return 2 * self.inner + 2 * self.group_state + self.num_heads

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.n_groups


SMALL = MambaDims(4, 10, 2, 12, 4, 8, epsilon=1e-5, time_step_min=1e-3)
MID = MambaDims(8, 8, 1, 16, 4, 16, epsilon=1e-6, time_step_min=1e-2)
ODD = MambaDims(6, 12, 3, 20, 3, 16, epsilon=1e-5, time_step_min=1e-3)  # 3 conv taps, 2 heads per group
EDGE = MambaDims(2, 80, 2, 13, 2, 12, epsilon=1e-5, time_step_min=1e-3)  # P in two tiles, N % 4, L % 16, K = 2
LARGE = MambaDims(4, 64, 2, 128, 4, 128, epsilon=1e-5, time_step_min=1e-3)
DIMS = {"small": SMALL, "mid": MID, "odd": ODD, "edge": EDGE, "large": LARGE}


def token_counts(d: MambaDims) -> list[int]:
    """T = 1, 5, L and 2L + 3 (several chunks, the last one partial); a few hundred tokens for the large dims."""
    return [1, 5, 300] if d.chunk_size >= 128 else [1, 5, d.chunk_size, 2 * d.chunk_size + 3]


CASES = [pytest.param(d, t, id=f"{name}-T{t}") for name, d in DIMS.items() for t in token_counts(d)]


# --- building and calling ----------------------------------------------------------------------------------------


def mixer_dims(d: MambaDims) -> dict[str, int | float | str]:
    return {"num_heads": d.num_heads, "head_dim": d.head_dim, "n_groups": d.n_groups, "state_size": d.state_size}


def emit_gated_rmsnorm(name: str, d: MambaDims) -> str:
    """gated_rmsnorm through the x86 lowering (launch order: zxbcdt, y, norm_weight, out)."""
    dims = {**mixer_dims(d), "epsilon": d.epsilon, "out_dtype": d.out_dtype}
    return emit_kernel(tile_kernel("gated_rmsnorm", dims, "x86", name=name))


def conv_kernel(d: MambaDims) -> tile.KernelOp:
    dims = {**mixer_dims(d), "conv_kernel": d.conv_kernel, "channels": d.conv_channels, "conv_bias": 1}
    return tile_kernel("conv_silu", dims, "x86", name="conv_silu")


def conv_programs(d: MambaDims) -> int:
    """conv_silu's range: blocks of channels (zxbcdt, conv_weight, conv_bias, conv_state, xbc; begin, end)."""
    return int(conv_kernel(d).grid.value.data)


def scan_kernel(d: MambaDims, name: str = "ssd_scan") -> tile.KernelOp:
    """ssd_scan (launch order: zxbcdt, xbc, dt_bias, A_log, D, ssm_state, y; its range: heads)."""
    dims = {**mixer_dims(d), "chunk_size": d.chunk_size, "time_step_min": d.time_step_min,
            "state_dtype": d.state_dtype}  # fmt: skip
    return tile_kernel("ssd_scan", dims, "x86", name=name)


def emit_ssd_step(name: str, d: MambaDims) -> str:
    """ssd_step (launch order as ssd_scan's; its range: heads)."""
    return emit_kernel(tile_kernel("ssd_step", {**mixer_dims(d), "state_dtype": d.state_dtype}, "x86", name=name))


def module_text(d: MambaDims) -> str:
    return "\n".join(
        [
            emit_kernel(conv_kernel(d)),
            emit_kernel(scan_kernel(d)),
            emit_ssd_step("ssd_step", d),
            emit_gated_rmsnorm("gated_rmsnorm", d),
        ]
    )


Build = Callable[..., KernelLibrary]


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """build(dims, host=True) -> the library of the four kernels, built once per (dims, host) in this module."""
    cache: dict[tuple[MambaDims, bool], KernelLibrary] = {}

    def get(d: MambaDims, host: bool = True) -> KernelLibrary:
        if (d, host) not in cache:
            cache[(d, host)] = build_library(module_text(d), tmp_path_factory.mktemp("mamba") / "k.so", host=host)
        return cache[(d, host)]

    return get


@pytest.fixture(scope="module")
def norm_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """norm_build(dims, host=True) -> gated_rmsnorm with an f32 out and gated_rmsnorm_bf16 with a bf16 out."""
    cache: dict[tuple[MambaDims, bool], KernelLibrary] = {}

    def get(d: MambaDims, host: bool = True) -> KernelLibrary:
        if (d, host) not in cache:
            text = emit_gated_rmsnorm("gated_rmsnorm", d) + emit_gated_rmsnorm(
                "gated_rmsnorm_bf16", replace(d, out_dtype="bf16")
            )
            cache[(d, host)] = build_library(text, tmp_path_factory.mktemp("norm") / "k.so", host=host)
        return cache[(d, host)]

    return get


def split_call(kernel: Callable[..., None], args: list[np.ndarray], total: int, rng: np.random.Generator,
               threads: bool = False) -> None:  # fmt: skip
    """kernel(*args, begin, end) on [0, k) and [k, total) for a random k (on two threads if asked)."""
    cut = int(rng.integers(0, total + 1))
    ranges = [(0, cut), (cut, total)]
    if not threads:
        for begin, end in ranges:
            kernel(*args, begin, end)
        return
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(kernel, *args, begin, end) for begin, end in ranges]:
            future.result()


def rel(actual: np.ndarray, expected: np.ndarray) -> float:
    assert not np.isnan(actual).any(), "NaN in the output (an element left unwritten?)"
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even, as the kernels store a bf16 state."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


# --- random problems ---------------------------------------------------------------------------------------------


@dataclass
class Problem:
    d: MambaDims
    zx: np.ndarray  # [T, W]
    xbc: np.ndarray  # [T, C]: the scan's input (random, not the conv of zx, so the kernels are tested apart)
    weights: Mamba2Weights
    conv_state: np.ndarray  # [C, K-1]
    ssm_state: np.ndarray  # [H, P, N] float32

    @property
    def params(self) -> Mamba2Params:
        d = self.d
        return Mamba2Params(
            num_heads=d.num_heads, head_dim=d.head_dim, state_size=d.state_size, n_groups=d.n_groups,
            conv_kernel=d.conv_kernel, chunk_size=d.chunk_size, epsilon=d.epsilon, time_step_min=d.time_step_min,
        )  # fmt: skip

    @property
    def dt_raw(self) -> np.ndarray:
        return self.zx[:, self.d.inner + self.d.conv_channels :].astype(np.float64)

    def ssd_args(self, state: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        w = self.weights
        return [self.zx, self.xbc, w.dt_bias, w.A_log, w.D, state, y]


def f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, np.float32)


def draw(d: MambaDims, tokens: int, rng: np.random.Generator) -> Problem:
    """Inputs and weights drawn like conftest's randomize_weights: A_log spread, D and norms around 1, dt_bias ~ -2.
    The projections are identities, so that reference mamba2_prefill/decode compute exactly these kernels' chain."""
    inner, channels, heads = d.inner, d.conv_channels, d.num_heads
    weights = Mamba2Weights(
        in_proj_weight=np.eye(d.proj_width, dtype=np.float32),
        conv_weight=f32(rng.standard_normal((channels, d.conv_kernel)) * 0.5),
        dt_bias=f32(rng.standard_normal(heads) - 2),
        A_log=f32(np.log(rng.random(heads) * 4 + 0.5)),
        D=f32(1 + 0.3 * rng.standard_normal(heads)),
        norm_weight=f32(1 + 0.3 * rng.standard_normal(inner)),
        out_proj_weight=np.eye(inner, dtype=np.float32),
        conv_bias=f32(rng.standard_normal(channels) * 0.2),
    )
    return Problem(
        d,
        zx=f32(rng.standard_normal((tokens, d.proj_width))),
        xbc=f32(rng.standard_normal((tokens, channels))),
        weights=weights,
        conv_state=f32(rng.standard_normal((channels, d.conv_kernel - 1))),
        ssm_state=f32(rng.standard_normal((heads, d.head_dim, d.state_size))),
    )


def scan_reference(problem: Problem, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """reference ssd_chunked + D x on problem.xbc: (y [T, I], final state float64)."""
    d, w = problem.d, problem.weights
    x, b, c = _split_xbc(problem.xbc.astype(np.float64), problem.params)
    dt = np.maximum(softplus(problem.dt_raw + w.dt_bias), d.time_step_min)
    a = -np.exp(w.A_log.astype(np.float64))
    y, final = ssd_chunked(x, dt, a, b, c, state, d.chunk_size)
    y = y + x * w.D[:, None]
    return y.reshape(len(x), -1), final


def step_reference(problem: Problem, state: np.ndarray, store: Callable[[np.ndarray], np.ndarray]) -> tuple[
    np.ndarray, np.ndarray
]:  # fmt: skip
    """mamba2_decode's recurrence one row at a time; store(state) is what the kernel keeps (f32 or bf16)."""
    w = problem.weights
    x, b, c = _split_xbc(problem.xbc.astype(np.float64), problem.params)
    dts = softplus(problem.dt_raw + w.dt_bias)
    a = -np.exp(w.A_log.astype(np.float64))
    ys = []
    for t in range(len(x)):
        ssm = state.astype(np.float64) * np.exp(dts[t] * a)[:, None, None]
        state = store(ssm + (dts[t][:, None, None] * b[t][:, None, :]) * x[t][:, :, None])
        ys.append(np.einsum("hpn,hn->hp", state.astype(np.float64), c[t]) + x[t] * w.D[:, None])
    return np.stack(ys).reshape(len(x), -1), state


def nan_like(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan, np.float32)


# --- conv_silu ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "tokens"), CASES)
def test_conv_silu(build: Build, rng: np.random.Generator, d: MambaDims, tokens: int) -> None:
    problem = draw(d, tokens, rng)
    xbc_in = problem.zx[:, d.inner : d.inner + d.conv_channels].astype(np.float64)
    expected, expected_state = causal_conv(xbc_in, problem.weights, problem.conv_state)
    w = problem.weights
    state, out = problem.conv_state.copy(), nan_like((tokens, d.conv_channels))
    assert w.conv_bias is not None
    split_call(
        build(d).kernel("conv_silu"), [problem.zx, w.conv_weight, w.conv_bias, state, out], conv_programs(d), rng
    )
    assert rel(out, expected) <= F32_TOLERANCE
    np.testing.assert_array_equal(state, expected_state)  # the carried inputs are copies


def test_conv_silu_decode_steps_equal_prefill(build: Build, rng: np.random.Generator) -> None:
    """T = 1 calls one after another (decode) give what one call over the same rows gives."""
    d = SMALL
    problem = draw(d, 6, rng)
    w = problem.weights
    conv = build(d).kernel("conv_silu")
    whole_state, whole = problem.conv_state.copy(), nan_like((6, d.conv_channels))
    conv(problem.zx, w.conv_weight, w.conv_bias, whole_state, whole, 0, conv_programs(d))
    state = problem.conv_state.copy()
    for t in range(6):
        row = nan_like((1, d.conv_channels))
        conv(np.ascontiguousarray(problem.zx[t : t + 1]), w.conv_weight, w.conv_bias, state, row, 0, conv_programs(d))
        np.testing.assert_allclose(row[0], whole[t], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(state, whole_state)


# --- ssd_scan -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "tokens"), CASES)
def test_ssd_scan(build: Build, rng: np.random.Generator, d: MambaDims, tokens: int) -> None:
    problem = draw(d, tokens, rng)
    expected_y, expected_state = scan_reference(problem, problem.ssm_state)
    state, y = problem.ssm_state.copy(), nan_like((tokens, d.inner))
    split_call(build(d).kernel("ssd_scan"), problem.ssd_args(state, y), d.num_heads, rng, threads=True)
    assert rel(y, expected_y) <= F32_TOLERANCE
    assert rel(state, expected_state) <= F32_TOLERANCE


@pytest.mark.parametrize("d", [ODD, EDGE, LARGE], ids=["odd", "edge", "large"])
def test_ssd_scan_avx2_variant(tmp_path: Path, rng: np.random.Generator, d: MambaDims) -> None:
    """The scan's AVX2 variant (its products in 4 x 16 register blocks, scores 8 lanes at a time) against the
    same reference, over heads split in two ranges (P = 80: a head in five pieces; 64: four)."""
    kernel = avx2_kernel(scan_kernel(d))
    library = build_library(emit_kernel(kernel), tmp_path / "avx2.so")
    tokens = d.chunk_size + 37
    problem = draw(d, tokens, rng)
    expected_y, expected_state = scan_reference(problem, problem.ssm_state)
    state, y = problem.ssm_state.copy(), nan_like((tokens, d.inner))
    split_call(library.kernel(kernel.sym_name.data), problem.ssd_args(state, y), d.num_heads, rng)
    assert rel(y, expected_y) <= F32_TOLERANCE
    assert rel(state, expected_state) <= F32_TOLERANCE


@pytest.mark.parametrize("d", [SMALL, MID, ODD, EDGE], ids=["small", "mid", "odd", "edge"])
def test_ssd_scan_in_two_pieces_equals_one_call(build: Build, rng: np.random.Generator, d: MambaDims) -> None:
    """A prompt prefilled in two pieces (the second resuming from the state the first wrote) equals one call."""
    tokens = 2 * d.chunk_size + 3
    problem = draw(d, tokens, rng)
    scan = build(d).kernel("ssd_scan")
    whole_state, whole = problem.ssm_state.copy(), nan_like((tokens, d.inner))
    scan(*problem.ssd_args(whole_state, whole), 0, d.num_heads)
    cut = int(rng.integers(1, tokens))
    state, y = problem.ssm_state.copy(), nan_like((tokens, d.inner))
    for rows in (slice(0, cut), slice(cut, tokens)):
        piece = replace(problem, zx=f32(problem.zx[rows]), xbc=f32(problem.xbc[rows]))
        part = nan_like((rows.stop - rows.start, d.inner))
        split_call(scan, piece.ssd_args(state, part), d.num_heads, rng)
        y[rows] = part
    expected_y, expected_state = scan_reference(problem, problem.ssm_state)
    assert rel(y, whole) <= F32_TOLERANCE and rel(state, whole_state) <= F32_TOLERANCE
    assert rel(y, expected_y) <= F32_TOLERANCE and rel(state, expected_state) <= F32_TOLERANCE


def test_ssd_scan_clamps_dt_and_survives_strong_decay(build: Build, rng: np.random.Generator) -> None:
    """dt below time_step_min is clamped; huge dt * A (cum down to about -1e4 in a chunk) neither overflows the
    masked entries nor loses the near-diagonal terms."""
    d = MID
    problem = draw(d, 2 * d.chunk_size + 3, rng)
    dt_col = d.inner + d.conv_channels
    problem.zx[:, dt_col:] = rng.choice([-30.0, 25.0, 0.0], size=problem.zx[:, dt_col:].shape)
    problem.weights.A_log[:] = np.log(rng.random(d.num_heads) * 40 + 0.5)
    expected_y, expected_state = scan_reference(problem, problem.ssm_state)
    state, y = problem.ssm_state.copy(), nan_like(expected_y.shape)
    split_call(build(d).kernel("ssd_scan"), problem.ssd_args(state, y), d.num_heads, rng)
    assert rel(y, expected_y) <= F32_TOLERANCE
    assert rel(state, expected_state) <= F32_TOLERANCE


# --- ssd_step -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", list(DIMS.values()), ids=list(DIMS))
def test_ssd_step(build: Build, rng: np.random.Generator, d: MambaDims) -> None:
    """Three decode calls of one row, then one call of three rows (processed in order)."""
    problem = draw(d, 6, rng)
    expected_y, expected_state = step_reference(problem, problem.ssm_state, lambda s: s.astype(np.float32))
    step = build(d).kernel("ssd_step")
    state, y = problem.ssm_state.copy(), nan_like((6, d.inner))
    for rows in [slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 6)]:
        piece = replace(problem, zx=f32(problem.zx[rows]), xbc=f32(problem.xbc[rows]))
        part = nan_like((rows.stop - rows.start, d.inner))
        split_call(step, piece.ssd_args(state, part), d.num_heads, rng)
        y[rows] = part
    assert rel(y, expected_y) <= F32_TOLERANCE
    assert rel(state, expected_state) <= F32_TOLERANCE


# --- bf16 state ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [SMALL, ODD, LARGE], ids=["small", "odd", "large"])
def test_bf16_state_scan(build: Build, rng: np.random.Generator, d: MambaDims) -> None:
    """The state is widened on entry and rounded once at the end of the call (element by element for P or N
    not a multiple of 16, else in 16 x 16 blocks stored transposed)."""
    d = replace(d, state_dtype="bf16")
    problem = draw(d, 2 * d.chunk_size + 3, rng)
    state = to_bf16(problem.ssm_state)
    expected_y, expected_state = scan_reference(problem, from_bf16(state))
    y = nan_like(expected_y.shape)
    split_call(build(d).kernel("ssd_scan"), problem.ssd_args(state, y), d.num_heads, rng)
    assert rel(y, expected_y) <= F32_TOLERANCE  # y is computed in f32 from the exact widened state
    assert rel(from_bf16(state), expected_state) <= BF16_TOLERANCE


@pytest.mark.parametrize(
    ("d", "host"), [(SMALL, True), (SMALL, False), (ODD, True)], ids=["small", "small-baseline", "odd"]
)
def test_bf16_state_step(build: Build, rng: np.random.Generator, d: MambaDims, host: bool) -> None:
    """Each row's new state is rounded to bf16 when stored, and y reads the rounded state (host and baseline)."""
    d = replace(d, state_dtype="bf16")
    problem = draw(d, 4, rng)
    state = to_bf16(problem.ssm_state)
    expected_y, expected_state = step_reference(problem, from_bf16(state), lambda s: from_bf16(to_bf16(s)))
    y = nan_like(expected_y.shape)
    split_call(build(d, host).kernel("ssd_step"), problem.ssd_args(state, y), d.num_heads, rng)
    assert rel(y, expected_y) <= BF16_TOLERANCE
    assert rel(from_bf16(state), expected_state) <= BF16_TOLERANCE


# --- gated_rmsnorm ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "tokens"), CASES)
def test_gated_rmsnorm(build: Build, rng: np.random.Generator, d: MambaDims, tokens: int) -> None:
    problem = draw(d, tokens, rng)
    y = f32(rng.standard_normal((tokens, d.inner)))
    z = problem.zx[:, : d.inner].astype(np.float64)
    expected = gated_rmsnorm(y.astype(np.float64), z, problem.weights.norm_weight, d.n_groups, d.epsilon)
    out = nan_like((tokens, d.inner))
    split_call(build(d).kernel("gated_rmsnorm"), [problem.zx, y, problem.weights.norm_weight, out], tokens, rng)
    assert rel(out, expected) <= F32_TOLERANCE


@pytest.mark.parametrize(
    ("d", "tokens", "host"),
    [(SMALL, 7, True), (ODD, 1, True), (EDGE, 13, True), (SMALL, 5, False)],
    ids=["small-T7", "odd-T1", "edge-T13", "small-T5-baseline"],
)
def test_gated_rmsnorm_bf16_out(norm_build: Build, rng: np.random.Generator, d: MambaDims, tokens: int,
                                host: bool) -> None:  # fmt: skip
    """out_dtype="bf16": the f32 kernel's output rounded to nearest even, within one bf16 ulp (groups of 20, 24 and
    80 channels: masked tails and whole vectors; row ranges split, on two threads for some)."""
    problem = draw(d, tokens, rng)
    y = f32(rng.standard_normal((tokens, d.inner)))
    library = norm_build(d, host)
    args = [problem.zx, y, problem.weights.norm_weight]
    out = nan_like((tokens, d.inner))
    split_call(library.kernel("gated_rmsnorm"), [*args, out], tokens, rng)
    out_bf16 = np.full((tokens, d.inner), 0x7FC0, np.uint16)  # bf16 NaN: an unwritten element fails
    split_call(library.kernel("gated_rmsnorm_bf16"), [*args, out_bf16], tokens, rng, threads=tokens > 1)
    assert_within_one_bf16_ulp(out_bf16, out)
    z = problem.zx[:, : d.inner].astype(np.float64)
    expected = gated_rmsnorm(y.astype(np.float64), z, problem.weights.norm_weight, d.n_groups, d.epsilon)
    assert rel(bf16_to_f32(out_bf16), expected) <= BF16_TOLERANCE


def assert_within_one_bf16_ulp(bits: np.ndarray, expected: np.ndarray) -> None:
    """bf16 bits within one ulp of float32 `expected` rounded to nearest even (compared as ordered integers)."""
    assert not np.isnan(bf16_to_f32(bits)).any(), "NaN in the output (an element left unwritten?)"

    def ordered(b: np.ndarray) -> np.ndarray:
        signed = b.astype(np.int32)
        return np.where(signed & 0x8000, 0x8000 - signed, signed)

    assert int(np.abs(ordered(bits) - ordered(bf16_bits(expected))).max()) <= 1


# --- the mixer chain, and the x86-64 baseline -------------------------------------------------------------------


def run_mixer(library: KernelLibrary, problem: Problem, state: Mamba2State, decode: bool,
              rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """conv_silu -> ssd_scan (or ssd_step) -> gated_rmsnorm on problem.zx, updating `state` in place."""
    d, w = problem.d, problem.weights
    tokens = len(problem.zx)
    xbc, y, out = nan_like((tokens, d.conv_channels)), nan_like((tokens, d.inner)), nan_like((tokens, d.inner))
    assert w.conv_bias is not None
    conv_args = [problem.zx, w.conv_weight, w.conv_bias, state.conv_state, xbc]
    split_call(library.kernel("conv_silu"), conv_args, conv_programs(d), rng)
    scan = library.kernel("ssd_step" if decode else "ssd_scan")
    split_call(scan, [problem.zx, xbc, w.dt_bias, w.A_log, w.D, state.ssm_state, y], d.num_heads, rng)
    split_call(library.kernel("gated_rmsnorm"), [problem.zx, y, w.norm_weight, out], tokens, rng)
    return out


@pytest.mark.parametrize("host", [True, False], ids=["host", "baseline"])
def test_mixer_prefill_then_decode(build: Build, rng: np.random.Generator, host: bool) -> None:
    """The four kernels chained equal reference mamba2_prefill then mamba2_decode (identity in/out projections),
    for the host CPU and the x86-64 baseline build."""
    d = SMALL
    library = build(d, host)
    prompt = draw(d, 2 * d.chunk_size + 3, rng)
    reference_state = Mamba2State(prompt.conv_state.copy(), prompt.ssm_state.copy())
    state = Mamba2State(prompt.conv_state.copy(), prompt.ssm_state.copy())
    expected, reference_state = mamba2_prefill(prompt.zx, prompt.weights, prompt.params, reference_state)
    assert rel(run_mixer(library, prompt, state, False, rng), expected) <= F32_TOLERANCE
    for _ in range(3):
        token = replace(prompt, zx=f32(rng.standard_normal((1, d.proj_width))))
        expected, reference_state = mamba2_decode(token.zx, token.weights, token.params, reference_state)
        assert rel(run_mixer(library, token, state, True, rng), expected) <= F32_TOLERANCE
    assert rel(state.ssm_state, reference_state.ssm_state) <= F32_TOLERANCE
    np.testing.assert_array_equal(state.conv_state, reference_state.conv_state)


def test_scan_footprint() -> None:
    """The scan's scratch (its footprint): the states of a group, Bᵀ, C·Bᵀ, the scores and the x tiles."""
    footprint = scan_kernel(LARGE).footprint
    assert footprint is not None
    assert int(footprint.value.data) >= 4 * (2 * 128 * 64 + 128 * 128 + 2 * 128 * 128 + 2 * 128 * 64)


# --- benchmark (python test/kernels/test_x86_mamba.py) -----------------------------------------------------------

BENCH = MambaDims(32, 64, 8, 128, 4, 128, epsilon=1e-5, time_step_min=1e-3)  # a Nemotron-H mixer layer


def _benchmark() -> None:
    """Each kernel at H=32, P=64, G=8, N=128, L=128 on 2 threads (1 thread for comparison); the prefill scan also
    as its AVX2 variant and its AMX variant (a bf16 artifact's, where this CPU has AMX), against the numpy
    reference and torch's mamba2_chunk_scan (transformers' NemotronH) when torch is installed."""
    import tempfile

    from test_x86_ssd_matrix import HAS_AMX, amx_library

    d, rng = BENCH, np.random.default_rng(0)  # timings: any fixed draw
    with tempfile.TemporaryDirectory() as scratch:
        library = build_library(module_text(d), Path(scratch) / "mamba.so")
        matrix = amx_library(d, Path(scratch) / "amx.so") if HAS_AMX else None
        avx2 = build_library(emit_kernel(avx2_kernel(scan_kernel(d))), Path(scratch) / "avx2.so")
        for tokens in (1, 512, 2048):
            problem = draw(d, tokens, rng)
            xbc, y, out = nan_like(problem.xbc.shape), nan_like((tokens, d.inner)), nan_like((tokens, d.inner))
            w = problem.weights
            assert w.conv_bias is not None
            calls: dict[str, tuple[list[np.ndarray], int]] = {
                "conv_silu": ([problem.zx, w.conv_weight, w.conv_bias, problem.conv_state, xbc], conv_programs(d)),
                "ssd_scan" if tokens > 1 else "ssd_step": (problem.ssd_args(problem.ssm_state.copy(), y), d.num_heads),
                "gated_rmsnorm": ([problem.zx, y, w.norm_weight, out], tokens),
            }
            variants = {"ssd_scan__avx2": avx2.kernel("ssd_scan__avx2")}
            if matrix is not None:
                variants["ssd_scan__amx"] = matrix.kernel("scan_f32__amx")
            if tokens > 1:
                calls |= dict.fromkeys(variants, calls["ssd_scan"])
            for name, (args, total) in calls.items():
                kernel = variants[name] if name in variants else library.kernel(name)
                # Timed calls keep advancing the states: only their time counts here.
                one = _best_ms(partial(kernel, *args, 0, total))
                two = _best_ms(partial(_two_threads, kernel, args, total))
                print(f"T={tokens:5d} {name:14s} {two:8.3f} ms on 2 threads ({one:.3f} ms on 1)")
            if tokens > 1:
                _compare_scan(library, problem)


_POOL = ThreadPoolExecutor(2)


def _two_threads(kernel: Callable[..., None], args: list[np.ndarray], total: int) -> None:
    futures = [_POOL.submit(kernel, *args, begin, end) for begin, end in ((0, total // 2), (total // 2, total))]
    for future in futures:
        future.result()


def _compare_scan(library: KernelLibrary, problem: Problem) -> None:
    state, y = problem.ssm_state.copy(), nan_like((len(problem.zx), problem.d.inner))
    library.kernel("ssd_scan")(*problem.ssd_args(state, y), 0, problem.d.num_heads)
    start = time.perf_counter()
    expected, _ = scan_reference(problem, problem.ssm_state)
    numpy_ms = (time.perf_counter() - start) * 1e3
    print(
        f"        ssd_scan rel err {rel(y, expected):.1e}; numpy reference {numpy_ms:.0f} ms; torch {_torch_ms(problem)}"
    )


def _best_ms(run: Callable[[], None], repeats: int = 7) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def _torch_ms(problem: Problem) -> str:
    try:
        import torch
        from transformers.models.nemotron_h.modeling_nemotron_h import mamba2_chunk_scan
    except ImportError:
        return "n/a"
    d, w = problem.d, problem.weights
    tokens = len(problem.zx)
    x, b, c = _split_xbc(problem.xbc, problem.params)
    group = (tokens, d.n_groups, d.state_size)
    args = [torch.from_numpy(np.ascontiguousarray(v))[None] for v in (x, problem.dt_raw.astype(np.float32))]
    bc = [torch.from_numpy(np.ascontiguousarray(v[:, :: d.heads_per_group].reshape(group)))[None] for v in (b, c)]
    state = torch.from_numpy(problem.ssm_state)[None]
    a = -torch.exp(torch.from_numpy(w.A_log))

    def run() -> None:
        with torch.no_grad():
            mamba2_chunk_scan(args[0], args[1], a, bc[0], bc[1], d.chunk_size, D=torch.from_numpy(w.D),
                              dt_bias=torch.from_numpy(w.dt_bias), initial_states=state, dt_softplus=True,
                              dt_limit=(d.time_step_min, float("inf")), return_final_states=True)  # fmt: skip

    return f"{_best_ms(run, 3):.1f} ms ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    _benchmark()

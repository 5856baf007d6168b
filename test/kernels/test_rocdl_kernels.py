"""Every ROCDL kernel kind run in the lockstep SIMT simulator (rocdl_sim.py) against a float64 reference: no AMD
GPU is here, so this is the numerical evidence for the AMD target.

Each kernel is built the way the compiler builds it: a `tessera.tile.kernel` with the kind's dims (as
convert-schedule-to-tile writes them) is tiled by the kind's GPU policy (tessera-tile-choose-tiles, gfx942),
its footprint computed, and lowered by convert_tile_to_rocdl.emit_kernel (KernelInfo with the LDS tiles of
the policy's body, the emitter, the LDS-bytes check). Inputs are random draws from the test's seed at small odd sizes (a
tail in every dimension); outputs start as NaN, so that an unwritten element fails, and cache rows past what
a call may read hold NaN too. Errors are max |error| / max |reference|. Matrix kinds run in both precisions:
fp32 (f32 MFMA) within 1e-5; bf16 (bf16 MFMA operands, f32 accumulation) against a reference rounding to
bf16 what the kernel rounds: within 1e-3 for matmul (its operands); the experts (operands and hidden layer)
within what their roundings allow per element (a hidden value at a bf16 rounding boundary may round either
way: experts_reference derives it), 1e-2 for the scan (its reference also rounds the scores and dt x, where boundary cases may round the
other way; it is checked loosely against float64 too) and attention (probabilities left unrounded).
Stateful kinds check the state they write and that two calls equal one. The last tests check the simulator
itself: its MFMA layout, and that the errors it exists to find (races, a divergent barrier...) are reported.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rocdl_sim import KernelModule, Report, SimulationError, Simulator
from router_cases import ROUTERS, router_case
from tile_kernels import tile_kernel

from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_tile_to_nvvm import emit_kernel as emit_nvvm_kernel
from tessera.lowering.convert_tile_to_rocdl import emit_kernel
from tessera.lowering.gpu.kernel import GpuKernel
from tessera.reference.common import rmsnorm, softplus
from tessera.reference.mamba2 import Mamba2Weights, causal_conv, gated_rmsnorm, ssd_chunked
from tessera.runtime.weights import bf16_bits, bf16_to_f32

ARCH = "gfx942"
# The NVVM target's SIMT kernels (lowering/gpu/simt*.py: every kind but its WGMMA GEMM, which test_nvvm_gemm.py
# checks at the machine-code level) run in the same simulator with warps of 32.
NVVM_ARCH = "sm_90a"
ARCHS = (ARCH, NVVM_ARCH)
PRECISIONS = ("fp32", "bf16")
F32_TOLERANCE = 1e-5
F32_UNIT = 2.0**-24  # f32's unit roundoff: a rounding's relative error is at most this
# Against a reference rounding to bf16 what the kernel rounds: the MFMA operands.
BF16_OPERANDS_TOLERANCE = 1e-3
# The same where a rounding boundary may fall on either side (a bf16 state, the scan's scores and dt x) or an
# intermediate is left unrounded (attention's probabilities, rounded per key block of the online softmax).
BF16_INTERMEDIATE_TOLERANCE = 1e-2
# The bf16 scan against float64 too, in case its emulating reference shared a mistake with the kernel: its
# rounded intermediates put this error at 3e-3 typically and up to about 1.2e-2 (600 draws).
BF16_FLOAT64_TOLERANCE = 5e-2
TOKENS = (1, 5, 37)
LOG = logging.getLogger(__name__)

Dims = dict[str, int | float | str]


# --- building and running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A kernel through the compiler's own path: the lowered kernel, its simulator, the dynamic shared bytes a
    launch gives it (Hopper's lane-staged WGMMA operands) and its tiles."""

    kernel: GpuKernel
    simulator: Simulator
    dynamic_shared_bytes: int
    tiles: Mapping[str, int | float | str]


@functools.cache
def _built(kind: str, dims: tuple[tuple[str, int | float | str], ...], precision: str, arch: str) -> Built:
    kernel = tile_kernel(kind, dict(dims), arch, precision)
    tiles = plain_dict(kernel.tiles) if kernel.tiles is not None else {}
    if arch == NVVM_ARCH:
        emitted = emit_nvvm_kernel(kernel)
        return Built(emitted.kernel, Simulator.of(emitted.kernel, wave_size=32), emitted.dynamic_shared_bytes, tiles)
    lowered = emit_kernel(kernel)
    return Built(lowered, Simulator.of(lowered), 0, tiles)


def build(kind: str, dims: Dims, precision: str = "fp32", arch: str = ARCH) -> tuple[GpuKernel, Simulator]:
    """The kernel of `kind` through the compiler's own path, and its simulator."""
    built = built_kernel(kind, dims, precision, arch)
    return built.kernel, built.simulator


def built_kernel(kind: str, dims: Dims, precision: str = "fp32", arch: str = ARCH) -> Built:
    return _built(kind, tuple(sorted(dims.items())), precision, arch)


def workgroups(kernel: GpuKernel, tokens: int) -> tuple[int, int]:
    """The grid the runtime launches: ceil(extent / per) along x and y, extent "tokens" being the call's."""

    def blocks(axis: tuple[int | str, int]) -> int:
        extent, per = axis
        return -(-(tokens if extent == "tokens" else int(extent)) // per)

    return blocks(kernel.grid.x), blocks(kernel.grid.y)


def launch(arch: str, kind: str, dims: Dims, precision: str, buffers: Mapping[str, np.ndarray], tokens: int,
           position: int = 0) -> Report:  # fmt: skip
    built = built_kernel(kind, dims, precision, arch)
    kernel, simulator = built.kernel, built.simulator
    assert simulator.threads == kernel.threads, "known_block_size is the launch's block size"
    scalars = {"tokens": tokens, "position": position}
    return simulator.run(workgroups(kernel, tokens), buffers, scalars, shared_bytes=built.dynamic_shared_bytes)


# --- comparisons ------------------------------------------------------------------------------------------------


def f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, np.float32)


def nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, np.float32)


def rounded(values: np.ndarray) -> np.ndarray:
    """values rounded to bf16 (nearest even), as float64."""
    return bf16_to_f32(bf16_bits(f32(values))).astype(np.float64)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    got = bf16_to_f32(got) if got.dtype == np.uint16 else got
    assert np.isfinite(got).all(), f"{int((~np.isfinite(got)).sum())} NaN / inf (an element left unwritten?)"
    scale = max(float(np.abs(want).max()), 1e-30)
    return float(np.abs(got.astype(np.float64) - want).max()) / scale


def check(what: str, got: np.ndarray, want: np.ndarray, tolerance: float) -> None:
    error = relative_error(got, want)
    LOG.info("%s: relative error %.2e (tolerance %.0e)", what, error, tolerance)
    assert error <= tolerance, f"{what}: relative error {error:.2e} > {tolerance:.0e}"


def check_bf16(what: str, bits: np.ndarray, want: np.ndarray, tolerance: float = F32_TOLERANCE) -> None:
    """bf16 bits within one bf16 ulp of `want` rounded to nearest even, plus `tolerance` of its scale (the f32
    arithmetic before the rounding may land on the other side of a rounding boundary)."""
    got = bf16_to_f32(bits).astype(np.float64)
    assert np.isfinite(got).all(), f"{what}: NaN / inf (an element left unwritten?)"
    expected = rounded(want)
    _, exponent = np.frexp(expected)
    ulp = np.where(expected == 0, 0.0, np.ldexp(1.0, exponent - 8))
    allowed = ulp + tolerance * max(float(np.abs(want).max()), 1e-30)
    excess = float((np.abs(got - expected) - allowed).max())
    LOG.info("%s: relative error %.2e (bf16 output)", what, relative_error(bits, want))
    assert excess <= 0, f"{what}: off by more than one bf16 ulp + {tolerance:.0e} (by {excess:.2e})"


# --- matmul -------------------------------------------------------------------------------------------------------

# Sizes past the 64 x 128 x 32 workgroup tile (T = 70: two row blocks; N = 200: two column blocks), with tails.
MATMULS: dict[str, Dims] = {
    "bias_n200_k45": {"n": 200, "k": 45, "bias": 1, "epilogue": "store"},
    "row_scale_accumulate_n200_k72": {"n": 200, "k": 72, "bias": 0, "row_scale": 1, "epilogue": "accumulate"},
    "relu2_n70_k33": {"n": 70, "k": 33, "bias": 0, "epilogue": "relu2"},
    "bf16_io_n200_k100": {"n": 200, "k": 100, "bias": 1, "epilogue": "store", "x_dtype": "bf16", "y_dtype": "bf16"},
}


@pytest.mark.parametrize("tokens", [*TOKENS, 70])
@pytest.mark.parametrize("case", MATMULS)
@pytest.mark.parametrize(("arch", "precision"), [(ARCH, "fp32"), (ARCH, "bf16"), (NVVM_ARCH, "fp32")])
def test_matmul(rng: np.random.Generator, arch: str, precision: str, case: str, tokens: int) -> None:
    check_matmul(rng, arch, precision, case, MATMULS[case], tokens)


@pytest.mark.parametrize("case", MATMULS)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_one_token_matmul(rng: np.random.Generator, arch: str, precision: str, case: str) -> None:
    """The decode step's form (dims tokens = 1: tiling/gpu.py gemv_tiles), every epilogue, N not a multiple of its
    columns (70) and K of its block (all of them)."""
    check_matmul(rng, arch, precision, case, {**MATMULS[case], "tokens": 1}, 1)


def check_matmul(rng: np.random.Generator, arch: str, precision: str, case: str, dims: Dims, tokens: int) -> None:
    n, k = int(dims["n"]), int(dims["k"])
    x = f32(rng.standard_normal((tokens, k)))
    weight = f32(rng.standard_normal((n, k)) / np.sqrt(k))
    bias = f32(rng.standard_normal(n))
    scale = f32(rng.random(tokens) + 0.5)
    y0 = f32(rng.standard_normal((tokens, n)))
    bf16_x, bf16_y = dims.get("x_dtype") == "bf16", dims.get("y_dtype") == "bf16"
    buffers = {"x": bf16_bits(x) if bf16_x else x, "w": bf16_bits(weight) if precision == "bf16" else weight}
    if dims["bias"]:
        buffers["bias"] = bias
    if dims.get("row_scale"):
        buffers["row_scale"] = scale
    y = y0.copy() if dims["epilogue"] == "accumulate" else nan(tokens, n)
    buffers["y"] = bf16_bits(y) if bf16_y else y
    launch(arch, "matmul", dims, precision, buffers, tokens)

    operand_x = rounded(x) if bf16_x or precision == "bf16" else x.astype(np.float64)
    operand_w = rounded(weight) if precision == "bf16" else weight.astype(np.float64)
    want = operand_x @ operand_w.T
    if dims.get("row_scale"):
        want *= scale[:, None]
    if dims["bias"]:
        want += bias
    if dims["epilogue"] == "accumulate":
        want += y0
    elif dims["epilogue"] == "relu2":
        want = np.maximum(want, 0) ** 2
    tolerance = F32_TOLERANCE if precision == "fp32" else BF16_OPERANDS_TOLERANCE
    if bf16_y:
        check_bf16(f"matmul {case} {precision} T={tokens}", buffers["y"], want, tolerance)
    else:
        check(f"matmul {case} {precision} T={tokens}", y, want, tolerance)


# --- row kernels --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("arch", ARCHS)
def test_embedding(rng: np.random.Generator, arch: str, tokens: int) -> None:
    vocab, hidden = 50, 72
    ids = rng.integers(0, vocab, tokens).astype(np.int64)
    table = f32(rng.standard_normal((vocab, hidden)))
    out = nan(tokens, hidden)
    launch(
        arch, "embedding", {"vocab": vocab, "hidden": hidden}, "fp32", {"ids": ids, "table": table, "out": out}, tokens
    )
    assert np.array_equal(out, table[ids])


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("hidden", [64, 72, 130, 256])  # 64 and 256: whole 8- and 16-byte runs a lane
@pytest.mark.parametrize("arch", ARCHS)
def test_rms_scale_and_rmsnorm(rng: np.random.Generator, arch: str, hidden: int, tokens: int) -> None:
    x = f32(rng.standard_normal((tokens, hidden)) * 3)
    weight = f32(1 + 0.3 * rng.standard_normal(hidden))
    rstd = nan(tokens)
    launch(arch, "rms_scale", {"hidden": hidden, "epsilon": 1e-5}, "fp32", {"h": x, "rstd": rstd}, tokens)
    check("rms_scale", rstd, 1 / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1) + 1e-5), F32_TOLERANCE)
    want = rmsnorm(x.astype(np.float64), weight, 1e-5)
    out = nan(tokens, hidden)
    launch(arch, "rmsnorm", {"hidden": hidden, "epsilon": 1e-5}, "fp32", {"x": x, "weight": weight, "out": out}, tokens)
    check("rmsnorm", out, want, F32_TOLERANCE)
    bits = bf16_bits(nan(tokens, hidden))
    dims: Dims = {"hidden": hidden, "epsilon": 1e-5, "out_dtype": "bf16"}
    launch(arch, "rmsnorm", dims, "fp32", {"x": x, "weight": weight, "out": bits}, tokens)
    check_bf16("rmsnorm bf16 out", bits, want)


@pytest.mark.parametrize("head_dim", [12, 128])  # 128: a head in vector runs
@pytest.mark.parametrize("cache_dtype", ["f32", "bf16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_kv_append_in_two_calls(rng: np.random.Generator, arch: str, cache_dtype: str, head_dim: int) -> None:
    """Keys and values land at the call's position; rows outside it keep what they held; 5 + 1 rows == 6."""
    heads, kv_heads, capacity = 4, 2, 16
    dims: Dims = {"num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim, "max_seq_len": capacity}
    if cache_dtype == "bf16":
        dims["cache_dtype"] = "bf16"
    qkv = f32(rng.standard_normal((6, (heads + 2 * kv_heads) * head_dim)))
    sentinel = 7.0
    caches = [np.full((capacity, kv_heads, head_dim), sentinel, np.float32) for _ in range(2)]
    if cache_dtype == "bf16":
        caches = [bf16_bits(cache) for cache in caches]
    past = 3
    for start, stop in ((0, 5), (5, 6)):
        buffers = {"qkv": f32(qkv[start:stop]), "k_cache": caches[0], "v_cache": caches[1]}
        launch(arch, "kv_append", dims, "fp32", buffers, stop - start, past + start)
    keys = qkv[:, heads * head_dim : (heads + kv_heads) * head_dim].reshape(6, kv_heads, head_dim)
    values = qkv[:, (heads + kv_heads) * head_dim :].reshape(6, kv_heads, head_dim)
    for cache, new in zip(caches, (keys, values), strict=True):
        got = bf16_to_f32(cache) if cache_dtype == "bf16" else cache
        expected = rounded(new).astype(np.float32) if cache_dtype == "bf16" else new
        assert np.array_equal(got[past : past + 6], expected)
        assert (np.delete(got, np.s_[past : past + 6], axis=0) == sentinel).all()


@pytest.mark.parametrize("case", ROUTERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_moe_router(rng: np.random.Generator, arch: str, case: str) -> None:
    want = router_case(case, 5, rng)
    ids, weights = np.full(want.ids.shape, -1, np.int64), nan(*want.ids.shape)
    buffers = {"logits": want.logits, "bias": want.bias, "ids": ids, "weights": weights}
    launch(arch, "moe_router", want.dims, "fp32", buffers, 5)
    assert np.array_equal(ids, want.ids)
    check(f"moe_router {case}", weights, want.weights, F32_TOLERANCE)


@pytest.mark.parametrize("epilogue", ["store", "accumulate"])
@pytest.mark.parametrize("arch", ARCHS)
def test_moe_combine(rng: np.random.Generator, arch: str, epilogue: str) -> None:
    top_k, latent, tokens = 3, 70, 37
    contrib, weights = f32(rng.standard_normal((tokens, top_k * latent))), f32(rng.standard_normal((tokens, top_k)))
    before = f32(rng.standard_normal((tokens, latent)))
    out = before.copy() if epilogue == "accumulate" else nan(tokens, latent)
    dims: Dims = {"num_experts": 8, "top_k": top_k, "latent": latent, "epilogue": epilogue}
    launch(arch, "moe_combine", dims, "fp32", {"contrib": contrib, "weights": weights, "out": out}, tokens)
    want = np.einsum("tk,tkl->tl", weights.astype(np.float64), contrib.reshape(tokens, top_k, latent))
    check(f"moe_combine {epilogue}", out, want + (before if epilogue == "accumulate" else 0), F32_TOLERANCE)


# --- Mamba -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mamba:
    heads: int
    head_dim: int
    groups: int
    state: int
    taps: int = 4
    chunk: int = 16
    time_step_min: float = 1e-3

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def channels(self) -> int:
        return self.inner + 2 * self.groups * self.state

    @property
    def width(self) -> int:
        return 2 * self.inner + 2 * self.groups * self.state + self.heads

    def dims(self, *keys: str, **extra: int | float | str) -> Dims:
        """The kernel dims convert-schedule-to-tile writes (its _RELEVANT keys of the kind, and `extra`)."""
        every: Dims = {
            "num_heads": self.heads, "head_dim": self.head_dim, "n_groups": self.groups, "state_size": self.state,
            "conv_kernel": self.taps, "chunk_size": self.chunk, "time_step_min": self.time_step_min, "epsilon": 1e-5,
        }  # fmt: skip
        return {key: every[key] for key in keys} | extra


MAMBA = {
    "h4_p12_g2_n16": Mamba(4, 12, 2, 16),
    "h2_p20_g1_n13_l32": Mamba(2, 20, 1, 13, taps=3, chunk=32),
}
SCAN_KEYS = ("num_heads", "head_dim", "n_groups", "state_size", "chunk_size", "time_step_min")
STEP_KEYS = ("num_heads", "head_dim", "n_groups", "state_size")


@dataclass
class MambaInputs:
    zxbcdt: np.ndarray
    xbc: np.ndarray
    dt_bias: np.ndarray
    a_log: np.ndarray
    skip: np.ndarray  # D

    def rows(self, start: int, stop: int) -> MambaInputs:
        return MambaInputs(f32(self.zxbcdt[start:stop]), f32(self.xbc[start:stop]), self.dt_bias, self.a_log, self.skip)

    def buffers(self, state: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        return {"zxbcdt": self.zxbcdt, "xbc": self.xbc, "dt_bias": self.dt_bias, "A_log": self.a_log, "D": self.skip,
                "ssm_state": state, "y": y}  # fmt: skip


def draw_mamba(m: Mamba, tokens: int, rng: np.random.Generator) -> MambaInputs:
    """Inputs drawn like conftest's randomize_weights (A_log spread, D around 1, dt_bias around -2)."""
    return MambaInputs(
        f32(rng.standard_normal((tokens, m.width))),
        f32(rng.standard_normal((tokens, m.channels))),
        f32(rng.standard_normal(m.heads) - 2),
        f32(np.log(rng.random(m.heads) * 4 + 0.5)),
        f32(1 + 0.3 * rng.standard_normal(m.heads)),
    )


def split_xbc(m: Mamba, xbc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xbc [T, C] -> x [T, H, P], B and C [T, H, N] (each head its group's), float64."""
    tokens, per_group = len(xbc), m.heads // m.groups
    x = xbc[:, : m.inner].reshape(tokens, m.heads, m.head_dim).astype(np.float64)
    b = xbc[:, m.inner : m.inner + m.groups * m.state].reshape(tokens, m.groups, m.state)
    c = xbc[:, m.inner + m.groups * m.state :].reshape(tokens, m.groups, m.state)
    return x, np.repeat(b, per_group, axis=1).astype(np.float64), np.repeat(c, per_group, axis=1).astype(np.float64)


def dt_raw(m: Mamba, inputs: MambaInputs) -> np.ndarray:
    return inputs.zxbcdt[:, m.inner + m.channels :].astype(np.float64) + inputs.dt_bias


# gated_rmsnorm's groups of 128 channels: whole vector runs a lane.
NORM_GROUPS = {**MAMBA, "h4_p64_g2_n16": Mamba(4, 64, 2, 16)}


@pytest.mark.parametrize("out_dtype", ["f32", "bf16"])
@pytest.mark.parametrize("m", list(NORM_GROUPS.values()), ids=list(NORM_GROUPS))
@pytest.mark.parametrize("arch", ARCHS)
def test_gated_rmsnorm(rng: np.random.Generator, arch: str, m: Mamba, out_dtype: str) -> None:
    tokens = 37
    zxbcdt, y = f32(rng.standard_normal((tokens, m.width)) * 2), f32(rng.standard_normal((tokens, m.inner)))
    weight = f32(1 + 0.3 * rng.standard_normal(m.inner))
    dims = m.dims(*STEP_KEYS, "epsilon", **({"out_dtype": "bf16"} if out_dtype == "bf16" else {}))
    out = bf16_bits(nan(tokens, m.inner)) if out_dtype == "bf16" else nan(tokens, m.inner)
    launch(arch, "gated_rmsnorm", dims, "fp32", {"zxbcdt": zxbcdt, "y": y, "norm_weight": weight, "out": out}, tokens)
    z = zxbcdt[:, : m.inner].astype(np.float64)
    want = gated_rmsnorm(y.astype(np.float64), z, weight, m.groups, 1e-5)
    if out_dtype == "bf16":
        check_bf16("gated_rmsnorm bf16 out", out, want)
    else:
        check("gated_rmsnorm", out, want, F32_TOLERANCE)


@pytest.mark.parametrize("lengths", [(5, 1, 0, 3), (150, 65, 2)], ids=["short", "token_blocks"])
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("m", list(MAMBA.values()), ids=list(MAMBA))
@pytest.mark.parametrize("arch", ARCHS)
def test_conv_silu_calls_equal_one(rng: np.random.Generator, arch: str, m: Mamba, has_bias: bool,
                                   lengths: tuple[int, ...]) -> None:  # fmt: skip
    """Calls carrying conv_state == the causal conv of all their tokens at once: of 5, 1, 0 and 3 tokens (a
    call shorter than the window), and of 150, 65 and 2 (the GPUs' blocks of 64 rows: windows that start in
    the call's rows, a last block of one row)."""
    total = sum(lengths)
    zxbcdt = f32(rng.standard_normal((total, m.width)))
    weight, bias = f32(rng.standard_normal((m.channels, m.taps)) * 0.5), f32(rng.standard_normal(m.channels) * 0.2)
    state0 = f32(rng.standard_normal((m.channels, m.taps - 1)))
    dims = m.dims(*STEP_KEYS, "conv_kernel", channels=m.channels, conv_bias=int(has_bias))
    state, outputs, start = state0.copy(), [], 0
    for length in lengths:
        xbc = nan(length, m.channels)
        buffers = {"zxbcdt": f32(zxbcdt[start : start + length]), "conv_weight": weight}
        buffers |= {"conv_bias": bias} if has_bias else {}
        launch(arch, "conv_silu", dims, "fp32", buffers | {"conv_state": state, "xbc": xbc}, length)
        outputs.append(xbc)
        start += length
    reference = Mamba2Weights(None, weight, None, None, None, None, None, conv_bias=bias if has_bias else None)  # type: ignore[arg-type]
    want, want_state = causal_conv(zxbcdt[:, m.inner : m.inner + m.channels].astype(np.float64), reference, state0)
    check("conv_silu", np.concatenate(outputs), want, F32_TOLERANCE)
    assert np.array_equal(state, want_state), "conv_state holds the last K-1 inputs exactly"


def step_reference(m: Mamba, inputs: MambaInputs, state: np.ndarray, bf16: bool) -> tuple[np.ndarray, np.ndarray]:
    """The decode recurrence row by row; the state kept (and read by y) as f32 or rounded to bf16."""
    x, b, c = split_xbc(m, inputs.xbc)
    dt = softplus(dt_raw(m, inputs))
    a = -np.exp(inputs.a_log.astype(np.float64))
    ys = []
    for t in range(len(x)):
        updated = state.astype(np.float64) * np.exp(dt[t] * a)[:, None, None]
        updated += (dt[t][:, None, None] * b[t][:, None, :]) * x[t][:, :, None]
        state = rounded(updated) if bf16 else updated.astype(np.float32).astype(np.float64)
        ys.append(np.einsum("hpn,hn->hp", state, c[t]) + x[t] * inputs.skip[:, None])
    return np.stack(ys).reshape(len(x), -1), state


STEPS = {**MAMBA, "h8_p9_g4_n128": Mamba(8, 9, 4, 128), "h2_p7_g1_n96": Mamba(2, 7, 1, 96)}


@pytest.mark.parametrize("state_dtype", ["f32", "bf16"])
@pytest.mark.parametrize("m", list(STEPS.values()), ids=list(STEPS))
@pytest.mark.parametrize("arch", ARCHS)
def test_ssd_step_calls(rng: np.random.Generator, arch: str, m: Mamba, state_dtype: str) -> None:
    """Decode calls of 1, 1 and 3 rows (rows in order) against the recurrence, state included."""
    inputs = draw_mamba(m, 5, rng)
    state0 = f32(rng.standard_normal((m.heads, m.head_dim, m.state)))
    bf16 = state_dtype == "bf16"
    state = bf16_bits(state0) if bf16 else state0.copy()
    want_y, want_state = step_reference(m, inputs, bf16_to_f32(state) if bf16 else state0, bf16)
    y = nan(5, m.inner)
    for start, stop in ((0, 1), (1, 2), (2, 5)):
        part = nan(stop - start, m.inner)
        dims = m.dims(*STEP_KEYS, state_dtype=state_dtype)
        launch(arch, "ssd_step", dims, "fp32", inputs.rows(start, stop).buffers(state, part), stop - start)
        y[start:stop] = part
    tolerance = BF16_INTERMEDIATE_TOLERANCE if bf16 else F32_TOLERANCE
    check(f"ssd_step y {state_dtype}", y, want_y, tolerance)
    check(f"ssd_step state {state_dtype}", state, want_state, tolerance)


# --- matrix kernels ---------------------------------------------------------------------------------------------


def scan_reference(m: Mamba, inputs: MambaInputs, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """reference ssd_chunked (dt clamped to time_step_min) + D x: (y [T, I], final state), float64."""
    x, b, c = split_xbc(m, inputs.xbc)
    dt = np.maximum(softplus(dt_raw(m, inputs)), m.time_step_min)
    a = -np.exp(inputs.a_log.astype(np.float64))
    y, final = ssd_chunked(x, dt, a, b, c, state.astype(np.float64), m.chunk)
    return (y + x * inputs.skip[:, None]).reshape(len(x), -1), final


def scan_reference_bf16(m: Mamba, inputs: MambaInputs, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ssd_chunked rounding to bf16 where the bf16 kernel does (kernels/ssd_blocks.py): its mma operands C, B,
    dt x (and dt x exp(cum[end] - cum[s]) for the state update), the masked decayed scores and the state read
    by C·stateᵀ; the state itself is carried unrounded. Otherwise float64."""
    x, b, c = split_xbc(m, inputs.xbc)
    dt = np.maximum(softplus(dt_raw(m, inputs)), m.time_step_min)
    a = -np.exp(inputs.a_log.astype(np.float64))
    state, ys = state.astype(np.float64), []
    for start in range(0, len(x), m.chunk):
        rows = slice(start, start + m.chunk)
        cum = np.cumsum(dt[rows] * a, axis=0)  # [L, H]
        b_rows, c_rows, dt_x = rounded(b[rows]), rounded(c[rows]), rounded(x[rows] * dt[rows, :, None])
        causal = np.tril(np.ones((len(cum), len(cum)), bool))[:, :, None]
        decay = np.where(causal, np.exp(np.where(causal, cum[:, None] - cum[None], 0.0)), 0.0)
        scores = rounded(np.einsum("lhn,shn->lsh", c_rows, b_rows) * decay)
        y = np.einsum("lsh,shp->lhp", scores, dt_x)
        y += np.einsum("lhn,hpn->lhp", c_rows, rounded(state)) * np.exp(cum)[:, :, None]
        ys.append(y + x[rows] * inputs.skip[:, None])
        to_end = rounded(x[rows] * (dt[rows] * np.exp(cum[-1] - cum))[:, :, None])
        state = state * np.exp(cum[-1])[:, None, None] + np.einsum("lhn,lhp->hpn", b_rows, to_end)
    return np.concatenate(ys).reshape(len(x), -1), state


SCANS = {
    **MAMBA,  # chunks of 16 rows (many chunks) / N = 13 (element-wise staging), P = 20 in a block of 32
    "h2_p40_g1_n32_l64": Mamba(2, 40, 1, 32, chunk=64),  # two row blocks, tiles over all 4 waves
    "h1_p24_g1_n16_l128": Mamba(1, 24, 1, 16, chunk=128),  # a chunk of more rows than the scan wave's lanes
    "h2_p40_g1_n128_l32": Mamba(2, 40, 1, 128, chunk=32),  # fp32: two channel blocks (grid y = 2)
}


@pytest.mark.parametrize("state_dtype", ["f32", "bf16"])
@pytest.mark.parametrize("m", list(SCANS.values()), ids=list(SCANS))
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_ssd_scan_two_calls(rng: np.random.Generator, arch: str, precision: str, m: Mamba, state_dtype: str) -> None:
    """A prefill of 2 chunks + 5 tokens in two calls cut 3 rows into the second chunk, each call against the
    reference from the state the kernel holds (a bf16 state is widened exactly on entry and rounded once at the
    end of the call): under bf16 the reference rounding where the kernel does, and float64 loosely. With
    an f32 state the two calls also equal one call over every token."""
    rounds = precision == "bf16"  # every GPU rounds the scan's mma operands to bf16 (tiling/gpu_ssd.py)
    tokens, cut = 2 * m.chunk + 5, m.chunk + 3
    inputs = draw_mamba(m, tokens, rng)
    state0 = f32(rng.standard_normal((m.heads, m.head_dim, m.state)))
    bf16_state = state_dtype == "bf16"
    state = bf16_bits(state0) if bf16_state else state0.copy()
    dims = m.dims(*SCAN_KEYS, state_dtype=state_dtype)
    tolerance = F32_TOLERANCE if not rounds else BF16_INTERMEDIATE_TOLERANCE
    y = nan(tokens, m.inner)
    for start, stop in ((0, cut), (cut, tokens)):
        entering, piece = bf16_to_f32(state) if bf16_state else state.copy(), inputs.rows(start, stop)
        want_y, want_state = (scan_reference_bf16 if rounds else scan_reference)(m, piece, entering)
        launch(arch, "ssd_scan", dims, precision, piece.buffers(state, y[start:stop]), stop - start)
        what = f"ssd_scan {precision} {state_dtype} rows {start}..{stop}"
        check(f"{what} y", y[start:stop], want_y, tolerance)
        check(f"{what} state", state, want_state, BF16_INTERMEDIATE_TOLERANCE if bf16_state else tolerance)
        if rounds:
            float64_y, float64_state = scan_reference(m, piece, entering)
            check(f"{what} y, float64", y[start:stop], float64_y, BF16_FLOAT64_TOLERANCE)
            check(f"{what} state, float64", state, float64_state, BF16_FLOAT64_TOLERANCE)
    if not bf16_state:
        whole_y, whole_state = (scan_reference_bf16 if rounds else scan_reference)(m, inputs, state0)
        check(f"ssd_scan {precision} two calls == one: y", y, whole_y, tolerance)
        check(f"ssd_scan {precision} two calls == one: state", state, whole_state, tolerance)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_ssd_scan_clamps_dt_and_survives_strong_decay(rng: np.random.Generator, arch: str, precision: str) -> None:
    """dt below time_step_min is clamped; huge dt * A (cum down to about -1e4 in a chunk) neither overflows the
    masked entries nor loses the near-diagonal terms (x86's test of the same name)."""
    rounds = precision == "bf16"  # every GPU rounds the scan's mma operands to bf16 (tiling/gpu_ssd.py)
    m = Mamba(4, 12, 2, 16, chunk=32, time_step_min=1e-2)
    tokens = 2 * m.chunk + 5
    inputs = draw_mamba(m, tokens, rng)
    inputs.zxbcdt[:, m.inner + m.channels :] = rng.choice([-30.0, 25.0, 0.0], size=(tokens, m.heads))
    inputs.a_log[:] = np.log(rng.random(m.heads) * 40 + 0.5)
    state0 = f32(rng.standard_normal((m.heads, m.head_dim, m.state)))
    want_y, want_state = (scan_reference_bf16 if rounds else scan_reference)(m, inputs, state0)
    state, y = state0.copy(), nan(tokens, m.inner)
    launch(arch, "ssd_scan", m.dims(*SCAN_KEYS, state_dtype="f32"), precision, inputs.buffers(state, y), tokens)
    tolerance = F32_TOLERANCE if not rounds else BF16_INTERMEDIATE_TOLERANCE
    check(f"ssd_scan strong decay y {precision}", y, want_y, tolerance)
    check(f"ssd_scan strong decay state {precision}", state, want_state, tolerance)


@dataclass(frozen=True)
class Attention:
    heads: int
    kv_heads: int
    head_dim: int
    capacity: int = 48

    @property
    def width(self) -> int:
        return (self.heads + 2 * self.kv_heads) * self.head_dim


ATTENTION = {
    "gqa2_d12": Attention(4, 2, 12),  # [block_k, 12] K and V blocks: padded slots in every wave
    "gqa3_d24": Attention(3, 1, 24),
    "mha_d16": Attention(2, 2, 16),
    "gqa9_d8": Attention(9, 1, 8),  # a [1, 8] query: replicated over the wave
}


def attention_reference(a: Attention, qkv: np.ndarray, keys: np.ndarray, values: np.ndarray, position: int,
                        bf16_queries: bool = False) -> np.ndarray:  # fmt: skip
    """Causal GQA of this call's queries over cache rows [0, position + tokens), float64; with `bf16_queries`
    the scaled queries, keys and values rounded to bf16 first, as the bf16-operand kernel (WGMMA) rounds them."""
    tokens, group = len(qkv), a.heads // a.kv_heads
    q = qkv[:, : a.heads * a.head_dim].reshape(tokens, a.heads, a.head_dim)
    scale = np.float32(a.head_dim**-0.5)
    q = rounded(f32(q) * scale) if bf16_queries else q.astype(np.float64) * float(scale)
    keys, values = (rounded(f32(cache)) if bf16_queries else cache for cache in (keys, values))
    k = np.repeat(keys[: position + tokens].astype(np.float64), group, axis=1)
    v = np.repeat(values[: position + tokens].astype(np.float64), group, axis=1)
    scores = np.einsum("thd,shd->hts", q, k)
    visible = np.arange(position + tokens)[None, :] <= (position + np.arange(tokens))[:, None]
    scores = np.where(visible[None], scores, -np.inf)
    probabilities = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    return np.einsum("hts,shd->thd", probabilities, v).reshape(tokens, a.heads * a.head_dim)


@pytest.mark.parametrize(("cache_dtype", "out_dtype"), [("f32", "f32"), ("bf16", "bf16")])
@pytest.mark.parametrize("case", ATTENTION)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_attention_prefill_then_decode(rng: np.random.Generator, arch: str, precision: str, case: str, cache_dtype: str,
                                       out_dtype: str) -> None:  # fmt: skip
    """Calls of 37, 1 and 5 tokens over one cache (its rows past the call's last key are NaN: never read). The
    kernel (kernels/attention.py) computes in f32 under either precision (K and V widened exactly), except
    Hopper's bf16-operand form (bf16, head dims of whole WGMMA K steps: mha_d16), whose rounded queries, keys
    and values the reference rounds too and whose rounded probabilities the tolerance allows for."""
    a = ATTENTION[case]
    dims: Dims = {"num_heads": a.heads, "num_kv_heads": a.kv_heads, "head_dim": a.head_dim, "max_seq_len": a.capacity}
    dims |= {"cache_dtype": "bf16"} if cache_dtype == "bf16" else {}
    dims |= {"out_dtype": "bf16"} if out_dtype == "bf16" else {}
    bf16_operands = bool(built_kernel("attention", dims, precision, arch).tiles.get("bf16_operands", 0))
    tolerance = BF16_INTERMEDIATE_TOLERANCE if bf16_operands else F32_TOLERANCE
    bf16_cache = cache_dtype == "bf16"
    keys, values = nan(a.capacity, a.kv_heads, a.head_dim), nan(a.capacity, a.kv_heads, a.head_dim)
    caches = [bf16_bits(keys), bf16_bits(values)] if bf16_cache else [keys, values]
    position = 0
    for tokens in (37, 1, 5):
        qkv = f32(rng.standard_normal((tokens, a.width)) * 1.5)
        new = qkv[:, a.heads * a.head_dim :].reshape(tokens, 2, a.kv_heads, a.head_dim)
        for cache, rows in zip(caches, (new[:, 0], new[:, 1]), strict=True):  # kv_append's part, done here
            cache[position : position + tokens] = bf16_bits(rows) if bf16_cache else rows
        out = nan(tokens, a.heads * a.head_dim)
        out = bf16_bits(out) if out_dtype == "bf16" else out
        launch(arch, "attention", dims, precision, {"qkv": qkv, "k_cache": caches[0], "v_cache": caches[1], "out": out},
               tokens, position)  # fmt: skip
        operands = [qkv, *(bf16_to_f32(cache) if bf16_cache else cache for cache in caches)]
        want = attention_reference(a, operands[0], operands[1], operands[2], position, bf16_operands)
        what = f"attention {case} {precision} cache {cache_dtype} T={tokens} position={position}"
        if out_dtype == "bf16":
            check_bf16(what, out, want, tolerance)
        else:
            check(what, out, want, tolerance)
        position += tokens


@pytest.mark.parametrize(("cache_dtype", "out_dtype"), [("f32", "f32"), ("bf16", "bf16")])
@pytest.mark.parametrize("case", ATTENTION)
@pytest.mark.parametrize("arch", ARCHS)
def test_decode_attention_split_then_combined(rng: np.random.Generator, arch: str, case: str, cache_dtype: str,
                                              out_dtype: str) -> None:  # fmt: skip
    """The decode step's attention (kernels/attention_decode.py): one token at positions where most of the 8
    splits are empty (0, 3), one per split (7) and several (40, the cache's last row 69), the partials (NaN
    before: every element written) combined in order; f32 arithmetic, K and V widened exactly."""
    a = ATTENTION[case]
    splits = 8
    dims: Dims = {"num_heads": a.heads, "num_kv_heads": a.kv_heads, "head_dim": a.head_dim, "max_seq_len": 70,
                  "splits": splits, "cache_dtype": cache_dtype, "out_dtype": out_dtype}  # fmt: skip
    bf16_cache = cache_dtype == "bf16"
    keys = f32(rng.standard_normal((70, a.kv_heads, a.head_dim)))
    values = f32(rng.standard_normal((70, a.kv_heads, a.head_dim)))
    caches = [bf16_bits(keys), bf16_bits(values)] if bf16_cache else [keys, values]
    operands = [bf16_to_f32(cache) for cache in caches] if bf16_cache else caches
    for position in (0, 3, 7, 40, 69):
        qkv = f32(rng.standard_normal((1, a.width)) * 1.5)
        partials = nan(a.heads * splits, a.head_dim + 2)
        buffers = {"qkv": qkv, "k_cache": caches[0], "v_cache": caches[1], "partials": partials}
        launch(arch, "attention_split", dims, "fp32", buffers, 1, position)
        out = bf16_bits(nan(1, a.heads * a.head_dim)) if out_dtype == "bf16" else nan(1, a.heads * a.head_dim)
        launch(arch, "attention_combine", dims, "fp32", {"partials": partials, "out": out}, 1, position)
        want = attention_reference(a, qkv, operands[0], operands[1], position)
        what = f"decode attention {case} cache {cache_dtype} position={position}"
        if out_dtype == "bf16":
            check_bf16(what, out, want)
        else:
            check(what, out, want, F32_TOLERANCE)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_decode_experts_as_gemvs(rng: np.random.Generator, arch: str, precision: str) -> None:
    """The decode step's experts (kernels/moe_decode.py): one token, its choices' up rows then down rows as
    GEMVs of the selected experts (F 42 and L 70: blocks with tails), a choice of no expert (id -1) left
    unwritten; against float64 on the operands rounded as the kernels round them (bf16: the weights, x and the
    hidden row)."""
    experts, top_k, ffn, latent = 4, 3, 42, 70
    dims: Dims = {"num_experts": experts, "top_k": top_k, "ffn": ffn, "latent": latent, "x_dtype": "bf16"}
    bf16 = precision == "bf16"
    x = f32(rng.standard_normal((1, latent)))
    up = f32(rng.standard_normal((experts, ffn, latent)) / np.sqrt(latent))
    down = f32(rng.standard_normal((experts, latent, ffn)) / np.sqrt(ffn))
    ids = np.array([[2, -1, 0]], np.int64)
    weights = [bf16_bits(w) if bf16 else w for w in (up, down)]
    hidden = nan(top_k, ffn)
    launch(
        arch, "moe_experts_up", dims, precision, {"x": bf16_bits(x), "ids": ids, "up": weights[0], "hidden": hidden}, 1
    )
    contrib = nan(1, top_k * latent)
    buffers = {"hidden": hidden, "ids": ids, "down": weights[1], "contrib": contrib}
    launch(arch, "moe_experts_down", dims, precision, buffers, 1)
    x64 = rounded(x)[0]
    for j, expert in enumerate(ids[0]):
        got = contrib[0, j * latent : (j + 1) * latent]
        if expert < 0:
            assert np.isnan(got).all(), "a choice of no expert was written"
            continue
        w_up, w_down = ((rounded(w[expert]) if bf16 else w[expert].astype(np.float64)) for w in (up, down))
        h = np.maximum(w_up @ x64, 0) ** 2
        want = w_down @ (rounded(h) if bf16 else h)
        check(
            f"decode experts {precision} choice {j}", got, want, BF16_INTERMEDIATE_TOLERANCE if bf16 else F32_TOLERANCE
        )


@dataclass(frozen=True)
class Experts:
    experts: int
    top_k: int
    ffn: int
    latent: int


EXPERTS = {
    "e8_k2_f40_l264": Experts(8, 2, 40, 264),  # several K blocks with a tail; ffn rows in some waves only
    "e8_k2_f36_l70": Experts(8, 2, 36, 70),  # ffn and latent not multiples of the lane vector
}


def experts_reference(e: Experts, x: np.ndarray, ids: np.ndarray, up: np.ndarray, down: np.ndarray,
                      bf16: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """contrib [T, K L]: down[e] relu(up[e] x[t])^2 for each slot (t, j) of expert e = ids[t, j]; NaN for slots
    of no expert (never written). bf16: the hidden layer rounded to bf16, as the kernel's down-product operand.

    And, per element, the error the bf16 kernel may have from the arithmetic (zero for fp32, whose check is
    F32_TOLERANCE): the kernel's f32 hidden value h' lies in [relu(a - d)^2 (1 - u), relu(a + d)^2 (1 + u)] around
    the exact a = up x (d = L u sum |up x|: L products summed in f32 in any order; one rounding of the square),
    so, rounding being monotone, its bf16 value lies between those bounds' roundings: it may be one bf16 ulp
    (2^-8..2^-7 relative) from the reference's rounded(h) where h sits that close to a rounding boundary, and
    each such element adds |down| x that distance; the f32 down product adds (F + 1) u sum |down h| (F + 1
    roundings, the store's included)."""
    contrib = np.full((len(x), e.top_k, e.latent), np.nan)
    allowed = np.zeros((len(x), e.top_k, e.latent))
    for t, j in np.ndindex(ids.shape):
        expert = ids[t, j]
        if 0 <= expert < e.experts:
            exact = up[expert] @ x[t]
            hidden = np.maximum(exact, 0) ** 2
            contrib[t, j] = down[expert] @ (rounded(hidden) if bf16 else hidden)
            if bf16:
                spread = e.latent * F32_UNIT * (np.abs(up[expert]) @ np.abs(x[t]))
                low = rounded(np.maximum(exact - spread, 0) ** 2 * (1 - F32_UNIT))
                high = rounded(np.maximum(exact + spread, 0) ** 2 * (1 + F32_UNIT))
                flip = np.maximum(rounded(hidden) - low, high - rounded(hidden))
                accumulation = (e.ffn + 1) * F32_UNIT * (np.abs(down[expert]) @ np.abs(rounded(hidden)))
                allowed[t, j] = np.abs(down[expert]) @ flip + accumulation
    return contrib.reshape(len(x), -1), allowed.reshape(len(x), -1)


@pytest.mark.parametrize("tokens", [*TOKENS, 150])
@pytest.mark.parametrize("case", EXPERTS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_moe_experts(rng: np.random.Generator, arch: str, precision: str, case: str, tokens: int) -> None:
    """Expert-major routed MLPs (kernels/moe_blocks.py). At 150 tokens every token routes to expert 0 (its slot
    list flushes every 15 slots, over two token groups). One slot routed to no expert (-1) stays unwritten; the
    5-token bf16 case reads bf16 activations."""
    e = EXPERTS[case]
    x = f32(rng.standard_normal((tokens, e.latent)))
    ids = np.argsort(rng.random((tokens, e.experts)), axis=1)[:, : e.top_k].astype(np.int64)
    if tokens == 150:
        ids = np.stack([np.zeros(tokens, np.int64), rng.integers(1, e.experts, tokens)], axis=1)
    ids[tokens // 2, 0] = -1
    up = f32(rng.standard_normal((e.experts, e.ffn, e.latent)) / np.sqrt(e.latent))
    down = f32(rng.standard_normal((e.experts, e.latent, e.ffn)) / np.sqrt(e.ffn))
    bf16 = precision == "bf16"
    bf16_x = bf16 and tokens == 5
    dims: Dims = {"num_experts": e.experts, "top_k": e.top_k, "ffn": e.ffn, "latent": e.latent}
    dims |= {"x_dtype": "bf16"} if bf16_x else {}
    contrib = nan(tokens, e.top_k * e.latent)
    up_stored, down_stored = (bf16_bits(up), bf16_bits(down)) if bf16 else (up, down)  # the matrix element
    buffers = {"x": bf16_bits(x) if bf16_x else x, "ids": ids, "up": up_stored, "down": down_stored, "contrib": contrib}
    launch(arch, "moe_experts", dims, precision, buffers, tokens)
    operands = [rounded(v) if bf16 else v.astype(np.float64) for v in (x, up, down)]
    want, allowed = experts_reference(e, operands[0], ids, operands[1], operands[2], bf16)
    unrouted = np.isnan(want)
    assert np.isnan(contrib[unrouted]).all(), "a slot routed to no expert was written"
    what = f"moe_experts {arch} {case} {precision} T={tokens}"
    if not bf16:
        check(what, contrib[~unrouted], want[~unrouted], F32_TOLERANCE)
        return
    assert np.isfinite(contrib[~unrouted]).all(), f"{what}: NaN / inf (an element left unwritten?)"
    excess = np.abs(contrib[~unrouted] - want[~unrouted]) - allowed[~unrouted]
    LOG.info("%s: relative error %.2e", what, relative_error(contrib[~unrouted], want[~unrouted]))
    assert excess.max() <= 0, f"{what}: beyond the error its roundings allow by {excess.max():.2e}"


def test_every_kind_is_covered() -> None:
    """A kind of kernels/ without a test here fails (it would go unsimulated on the GPUs); the WGMMA GEMM (bf16
    matmul on sm_90a) is test_nvvm_gemm.py's."""
    from tessera.kernels import KERNELS

    tested = {
        "matmul",
        "embedding",
        "rmsnorm",
        "rms_scale",
        "kv_append",
        "moe_router",
        "moe_combine",
        "gated_rmsnorm",
        "conv_silu",
        "ssd_step",
        "attention",
        "ssd_scan",
        "moe_experts",
        "attention_split",
        "attention_combine",
        "moe_experts_up",
        "moe_experts_down",
        "draw_weights",  # test_draw_kernel.py's
    }
    assert set(KERNELS) == tested


# --- the simulator's own checks -----------------------------------------------------------------------------------


PROBES = Path(__file__).parent.parent / "inputs" / "simulator_probes.mlir"  # GPU functions written by hand


@functools.cache
def _probes() -> KernelModule:
    return KernelModule(PROBES.read_text())


def _probe(name: str, *buffers: str) -> Simulator:
    """A function of simulator_probes.mlir, its parameters named: `buffers`, then the ABI's tokens and position."""
    return Simulator(_probes(), name, names=[*buffers, "tokens", "position"])


def test_simulator_runs_a_plain_store() -> None:
    out = np.zeros(128, np.int32)
    _probe("store_tid", "out").run((1, 1), {"out": out}, {"tokens": 1, "position": 0})
    assert np.array_equal(out, np.arange(128))


def test_simulator_refuses_out_of_bounds_and_racy_stores() -> None:
    with pytest.raises(SimulationError, match="out of bounds"):
        _probe("store_tid", "out").run((1, 1), {"out": np.zeros(100, np.int32)}, {"tokens": 1, "position": 0})
    with pytest.raises(
        SimulationError, match=r"racy store: .* written by workgroups 1 and 0"
    ):  # both workgroups write out[tid]
        _probe("store_tid", "out").run((2, 1), {"out": np.zeros(128, np.int32)}, {"tokens": 1, "position": 0})


def test_simulator_refuses_a_divergent_barrier_and_an_unknown_op() -> None:
    with pytest.raises(SimulationError, match="divergent barrier"):
        _probe("divergent_barrier", "out").run((1, 1), {"out": np.zeros(1, np.int32)}, {"tokens": 1, "position": 0})
    with pytest.raises(SimulationError, match=r"'arith\.floordivsi' is not modelled"):
        _probe("unknown_op", "out")


def test_simulator_finds_a_race_between_waves_without_their_barrier() -> None:
    """Two waves passing values through LDS: each thread writes its slot, then reads the slot of the thread
    127 - tid (the other wave's); with the barrier between it is a clean exchange, without it a race. (Every
    kernel of kernels/ is one wave a workgroup, whose barriers order lanes that a lockstep wave orders anyway;
    this keeps the check honest for the kernels with several.)"""
    out = np.zeros(128, np.int32)
    _probe("exchange", "out").run((1, 1), {"out": out}, {"tokens": 1, "position": 0})
    assert np.array_equal(out, np.arange(127, -1, -1, dtype=np.int32))
    with pytest.raises(SimulationError, match="LDS race"):
        _probe("exchange_without_barrier", "out").run(
            (1, 1), {"out": np.zeros(128, np.int32)}, {"tokens": 1, "position": 0}
        )


@pytest.mark.parametrize("element", ["bf16", "f32"])
def test_simulator_mfma_layout(rng: np.random.Generator, element: str) -> None:
    """D = C + A B for one wave whose operands are placed by the layout arch.WaveFragments documents, the kernel
    written out by hand (test/inputs/simulator_probes.mlir): lane l = 16 q + c holds A[c][kpl q + i] and B[kpl q + i][c],
    and D[4 q + i][c]."""
    depth = 16 if element == "bf16" else 4
    simulator = _probe(f"mfma_{element}", "a", "b", "d")
    a, b_matrix = f32(rng.standard_normal((16, depth))), f32(rng.standard_normal((depth, 16)))
    if element == "bf16":
        a, b_matrix = bf16_to_f32(bf16_bits(a)), bf16_to_f32(bf16_bits(b_matrix))
    stored = {"a": bf16_bits(a), "b": bf16_bits(b_matrix)} if element == "bf16" else {"a": a, "b": b_matrix}
    out = nan(16, 16)
    simulator.run((1, 1), {**stored, "d": out}, {"tokens": 1, "position": 0})
    check(f"mfma {element}", out, a.astype(np.float64) @ b_matrix, F32_TOLERANCE)

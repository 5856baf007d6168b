"""The AMX variant of ssd_scan (kernels/ssd_matrix.py: its products bf16 on the matrix unit, for bf16 artifacts)
built to machine code: with the AMX pattern where this CPU has AMX, and everywhere with the same Tile-IR's
products as vector FMAs ("fma"), against the recurrence in float64.

Bound, per element: each term of an output (a dt x B C product of the chunk's tokens or of the carried state,
decayed) meets at most four operands rounded to bf16 (C or exp(cum) C, B, the state or the scores' C·B, x dt
or x dt exp(cum_end - cum); 2^-9 relative each), so it is off by at most 4 2^-9 = 2^-7 of itself, the f32 sums
and exps far below that: |error| <= 2^-6 (a factor 2 of margin) times the same recurrence in absolute values
with half the decay (as test_tile_interpreter's check_ssd_scan bounds the f32 scan; its decays, exp of f32
segment sums, are off by far less than bf16's rounding). A bf16 state: one bf16 ulp of the final state more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_x86_mamba import MambaDims, Problem, draw, mixer_dims

pytest.importorskip("mlir", reason="the MLIR 22 bindings are not installed (pip install -e '.[mlir]')")
pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install -e '.[mlir]')")

from xdsl.dialects.builtin import ModuleOp

from tessera import toolchain
from tessera.dialects.upstream import upstream_text
from tessera.lowering.convert_tile_to_x86 import amx_scan_kernel
from tessera.lowering.expand_math import expand_math
from tessera.lowering.tile_to_x86 import lower_to_x86
from tessera.lowering.x86.pipeline import AMX_LLVM_PIPELINE
from tessera.reference.common import softplus
from tessera.reference.mamba2 import _split_xbc
from tessera.runtime.cpu_features import AMX, cpu_flags, request_amx_permission
from tessera.runtime.native import KernelLibrary
from tessera.runtime.weights import bf16_to_f32

HAS_AMX = AMX <= cpu_flags() and request_amx_permission()
BF16_TERM = 2.0**-6

# N a whole number of row pairs (32), P of 16-column panels: one panel; three (a pair, then the odd one); 80 as
# Nemotron Nano 12B's heads (five). Chunks shorter than a row pair, equal to it, and the models' 128.
ONE_PANEL = MambaDims(4, 16, 2, 32, 4, 16, epsilon=1e-5, time_step_min=1e-3)
ODD_PANELS = MambaDims(6, 48, 2, 64, 4, 32, epsilon=1e-5, time_step_min=1e-2)  # 3 heads per group
NANO_HEADS = MambaDims(4, 80, 1, 128, 4, 128, epsilon=1e-5, time_step_min=1e-3)
CASES = [
    pytest.param(ONE_PANEL, 1, id="one_panel-T1"),
    pytest.param(ONE_PANEL, 5, id="one_panel-T5"),
    pytest.param(ONE_PANEL, 37, id="one_panel-T37"),
    pytest.param(ODD_PANELS, 70, id="odd_panels-T70"),
    pytest.param(NANO_HEADS, 131, id="nano_heads-T131"),
]


def scan_dims(d: MambaDims, state_dtype: str = "f32") -> dict[str, int | float | str]:
    return {**mixer_dims(d), "chunk_size": d.chunk_size, "time_step_min": d.time_step_min, "state_dtype": state_dtype}


def variant_text(d: MambaDims, state_dtype: str, emulated: bool) -> str:
    kernel = amx_scan_kernel(f"scan_{state_dtype}", scan_dims(d, state_dtype))
    assert kernel is not None
    module = ModuleOp([kernel])
    lower_to_x86(module, amx=not emulated)
    expand_math(module, "x86")
    return upstream_text(module.body.block.first_op)  # type: ignore[arg-type]


def amx_library(d: MambaDims, path: Path, emulated: bool = False) -> KernelLibrary:
    """scan_f32__amx and scan_bf16__amx (f32 and bf16 states): on AMX, or (emulated) as vector FMAs."""
    text = "\n".join(variant_text(d, state, emulated) for state in ("f32", "bf16"))
    llvm_ir = toolchain.mlir_to_llvm_ir(text, AMX_LLVM_PIPELINE)
    cpu = toolchain.host_cpu() if emulated else toolchain.X86_64_AMX
    return KernelLibrary(toolchain.link_shared([toolchain.compile_object(llvm_ir, cpu=cpu)], path))


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[MambaDims, str], KernelLibrary]:
    """build(dims, lowering) -> the f32- and bf16-state kernels of the variant, built once per module."""
    built: dict[tuple[MambaDims, str], KernelLibrary] = {}

    def get(d: MambaDims, lowering: str) -> KernelLibrary:
        if lowering == "amx" and not HAS_AMX:
            pytest.skip("this CPU has no AMX (or refused its permission): the fma lowering runs the same kernel")
        if (d, lowering) not in built:
            path = tmp_path_factory.mktemp("ssd_matrix") / "k.so"
            built[(d, lowering)] = amx_library(d, path, emulated=lowering == "fma")
        return built[(d, lowering)]

    return get


def expected(problem: Problem, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(y, y's bound scale, final state, its bound scale) of the recurrence token by token in float64."""
    d, w = problem.d, problem.weights
    x, b, c = _split_xbc(problem.xbc.astype(np.float64), problem.params)
    dts = np.maximum(softplus(problem.dt_raw + w.dt_bias), d.time_step_min)
    a = -np.exp(w.A_log.astype(np.float64))
    want, scale = state.astype(np.float64), np.abs(state.astype(np.float64))
    ys, y_scales = [], []
    for t in range(len(x)):
        update = (dts[t][:, None] * x[t])[:, :, None] * b[t][:, None, :]
        want = np.exp(dts[t] * a)[:, None, None] * want + update
        scale = np.exp(dts[t] * a / 2)[:, None, None] * scale + np.abs(update)
        dx = w.D[:, None] * x[t]
        ys.append((want * c[t][:, None, :]).sum(-1) + dx)
        y_scales.append((scale * np.abs(c[t][:, None, :])).sum(-1) + np.abs(dx))
    return np.stack(ys).reshape(len(x), -1), np.stack(y_scales).reshape(len(x), -1), want, scale


def run_split(kernel: Callable[..., None], problem: Problem, state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The kernel over every head in two calls split on a group boundary (as the runtime splits it)."""
    d = problem.d
    y = np.full((len(problem.xbc), d.inner), np.nan, np.float32)
    per_group = d.num_heads // d.n_groups
    cut = int(rng.integers(0, d.n_groups + 1)) * per_group
    for first, end in ((0, cut), (cut, d.num_heads)):
        kernel(*problem.ssd_args(state, y), first, end)
    return y


@pytest.mark.parametrize("lowering", ["fma", "amx"])
@pytest.mark.parametrize(("d", "tokens"), CASES)
def test_matches_float64(build: Callable[..., KernelLibrary], rng: np.random.Generator, lowering: str,
                         d: MambaDims, tokens: int) -> None:  # fmt: skip
    problem = draw(d, tokens, rng)
    state = problem.ssm_state.copy()
    y = run_split(build(d, lowering).kernel("scan_f32__amx"), problem, state, rng)
    want_y, y_scale, want_state, state_scale = expected(problem, problem.ssm_state)
    assert np.isfinite(y).all(), "an output left unwritten"
    assert (np.abs(y - want_y) <= BF16_TERM * y_scale).all(), np.max(np.abs(y - want_y) / y_scale)
    assert (np.abs(state - want_state) <= BF16_TERM * state_scale).all(), "the final state"


@pytest.mark.parametrize("lowering", ["fma", "amx"])
def test_bf16_state_rounds_once(build: Callable[..., KernelLibrary], rng: np.random.Generator, lowering: str) -> None:
    d = ODD_PANELS
    problem = draw(d, 45, rng)
    bits = (problem.ssm_state.view(np.uint32) >> 16).astype(np.uint16)  # truncated: any bf16 state
    start = bf16_to_f32(bits)
    y = run_split(build(d, lowering).kernel("scan_bf16__amx"), problem, bits, rng)
    want_y, y_scale, want_state, state_scale = expected(problem, start)
    assert (np.abs(y - want_y) <= BF16_TERM * y_scale).all()
    bound = BF16_TERM * state_scale + 2.0**-8 * np.abs(want_state)
    assert (np.abs(bf16_to_f32(bits) - want_state) <= bound).all(), "the final state"


def test_in_two_pieces_equals_one_call(build: Callable[..., KernelLibrary], rng: np.random.Generator) -> None:
    """A prompt in two calls (the second resuming from the first's state) within the bound of one call: the
    pieces' chunks fall elsewhere, so the numbers differ by roundings only."""
    d = ODD_PANELS
    problem = draw(d, 70, rng)
    kernel = build(d, "fma").kernel("scan_f32__amx")
    state = problem.ssm_state.copy()
    first, second = (
        replace(problem, zx=problem.zx[rows], xbc=problem.xbc[rows]) for rows in (slice(0, 41), slice(41, 70))
    )
    y = np.concatenate([run_split(kernel, first, state, rng), run_split(kernel, second, state, rng)])
    want_y, y_scale, want_state, state_scale = expected(problem, problem.ssm_state)
    assert (np.abs(y - want_y) <= BF16_TERM * y_scale).all()
    assert (np.abs(state - want_state) <= BF16_TERM * state_scale).all()


def test_an_empty_range_writes_nothing(build: Callable[..., KernelLibrary], rng: np.random.Generator) -> None:
    """An empty range writes nothing (the runtime's threads may get one)."""
    d = ONE_PANEL
    problem = draw(d, 5, rng)
    state = problem.ssm_state.copy()
    y = np.full((5, d.inner), np.nan, np.float32)
    build(d, "fma").kernel("scan_f32__amx")(*problem.ssd_args(state, y), 2, 2)
    assert np.isnan(y).all() and (state == problem.ssm_state).all()

"""kernels/draw.py's draw_weights through both GPU lowerings, on the simulator: every element the host twin's
(model/philox.py) to the last bit — normal and uniform, f32 and bf16, a row not a multiple of the tile, a seed
past 2^32 — and on Hopper through ptxas without spills."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NEEDS_MLIR
from rocdl_sim import Simulator
from tile_kernels import tile_kernel

from tessera.lowering.convert_tile_to_nvvm import emit_kernel as emit_nvvm_kernel
from tessera.lowering.convert_tile_to_rocdl import emit_kernel as emit_rocdl_kernel
from tessera.lowering.nvvm import pipeline
from tessera.model import philox
from tessera.model.weight_init import stream_of
from tessera.runtime.weights import bf16_bits

pytestmark = NEEDS_MLIR


def _dims(rule: str, scale: float, cols: int, dtype: str) -> dict[str, int | str]:
    bits = philox.normal_scale(scale) if rule == "normal" else philox.uniform_scale(scale)
    return {"rule": rule, "scale_bits": int(np.array(bits).view(np.uint32)), "cols": cols, "out_dtype": dtype}


def _expected(rule: str, scale: float, rows: int, cols: int, dtype: str, stream: int, seed: int) -> np.ndarray:
    words = philox.element_words(np.arange(rows * cols, dtype=np.int64), stream, seed)
    values = philox.normal_values(words, scale) if rule == "normal" else philox.uniform_values(words, scale)
    return (bf16_bits(values) if dtype == "bf16" else values).reshape(rows, cols)


@pytest.mark.parametrize("arch", ["gfx942", "sm_90a"])
@pytest.mark.parametrize(
    ("rule", "scale", "cols", "dtype"), [("normal", 0.02, 200, "bf16"), ("uniform", 0.3, 24, "f32")]
)
def test_draws_the_host_twins_bits(arch: str, rule: str, scale: float, cols: int, dtype: str, seed: int) -> None:
    kernel = tile_kernel("draw_weights", _dims(rule, scale, cols, dtype), arch, "bf16", grid=0)
    if arch == "sm_90a":
        simulator = Simulator.of(emit_nvvm_kernel(kernel).kernel, wave_size=32)
    else:
        simulator = Simulator.of(emit_rocdl_kernel(kernel))
    rows, stream, full_seed = 5, stream_of("layers.0.mixer.in_proj.weight"), seed | (0xA5A5 << 40)
    out = np.zeros((rows, cols), np.uint16 if dtype == "bf16" else np.float32)
    key = np.array([full_seed & philox.WORD, full_seed >> 32, stream, 0], np.uint32).view(np.int32)
    simulator.run((rows, 1), {"out": out, "key": key}, {"tokens": rows, "position": 0})
    expected = _expected(rule, scale, rows, cols, dtype, stream, full_seed)
    assert np.array_equal(out.view(np.uint8), expected.view(np.uint8))


def test_hopper_draw_at_the_12b_row_has_no_spills() -> None:
    if pipeline.find_ptxas() is None:
        pytest.skip("ptxas is not installed (CUDA's ptxas: ../shared/TOOLCHAIN.md)")
    tiled = tile_kernel("draw_weights", _dims("normal", 0.02, 5120, "bf16"), "sm_90a", "bf16", name="draw", grid=0)
    artifacts = pipeline.compile_kernels(emit_nvvm_kernel(tiled).text, "draw", sass=False)
    report = artifacts.cubin.kernels["draw"]
    assert report.spill_stores == report.spill_loads == report.stack_frame == 0
    assert "mul.hi.u32" in artifacts.ptx  # Philox's 32 x 32 -> 64 products, not a 64-bit multiply's emulation

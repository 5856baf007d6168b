"""One schedule feeds every target: the Schedule-IR is the same text whichever target lowers it, and the
Tile-IR of x86, gfx942, gfx90a and sm_90a differs only in the per-target choices (tiles, footprint, grid
and parallel unit, and the body's tile shapes, element types, memory spaces, padding and async copies).
So what the x86 target proves against Hugging Face carries over to the GPU targets as far as IR can show."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp, bf16
from xdsl.ir import Attribute

from tessera.arch import staged_shape
from tessera.dialects import tile
from tessera.frontend.config import load_model
from tessera.frontend.graph_builder import build_graph
from tessera.lowering.decode_kernels import specialize_decode
from tessera.model.config import ModelSpec
from tessera.targets.stages import lower_to_schedule, lower_to_tile

CONFIGS = Path(__file__).parent.parent / "configs"
TARGETS = ("x86", "gfx942", "gfx90a", "sm_90a")
GPUS = TARGETS[1:]
# What a target may choose on a kernel (its body is the kernel of kernels/ built from the tiles).
KERNEL_CHOICES = {"target", "tiles", "footprint", "grid", "parallel", "scalars", "token_block"}


def _spec(config: str, precision: str) -> ModelSpec:
    spec = load_model(str(CONFIGS / config))
    return replace(spec, compile=replace(spec.compile, precision=precision))


def _tiled(config: str, precision: str) -> tuple[str, dict[str, ModuleOp]]:
    spec = _spec(config, precision)
    schedule = lower_to_schedule(build_graph(spec.config, spec.source), spec)
    return str(schedule), {target: lower_to_tile(schedule, spec, target) for target in TARGETS}


def _kernels(module: ModuleOp) -> dict[str, tile.KernelOp]:
    return {op.sym_name.data: op for op in module.ops if isinstance(op, tile.KernelOp)}


def _without_kernels(module: ModuleOp) -> str:
    """The module's programs and state, kernels left out: the launches must be identical text."""
    return "\n".join(str(op) for op in module.ops if not isinstance(op, tile.KernelOp))


@pytest.mark.parametrize("config", ["nemotron_h_tiny.yaml", "nemotron_h_mid_moe.yaml"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_one_schedule_and_tile_ir_that_differs_only_in_choices(config: str, precision: str) -> None:
    schedule_text, tiled = _tiled(config, precision)
    spec = _spec(config, precision)
    again = lower_to_schedule(build_graph(spec.config, spec.source), spec)
    assert str(again) == schedule_text  # a pure function of the model and the compile options

    # A GPU module is the x86 one with @decode's one-token kernels (lowering/decode_kernels.py: GEMVs and the
    # split attention) and the kernels that draw a seeded model's weights on the device (x86: the host).
    reference = tiled["x86"].clone()
    specialize_decode(reference)
    assert any(name.endswith("_tokens1") for name in _kernels(reference))
    assert any(kernel.kind.data == "attention_split" for kernel in _kernels(reference).values()) == (
        "*" in spec.config.hybrid_override_pattern
    )
    for target in GPUS:
        module = tiled[target]
        assert _without_kernels(module) == _without_kernels(reference), target
        ours, theirs = _kernels(module), _kernels(reference)
        draws = {name for name, kernel in ours.items() if kernel.kind.data == "draw_weights"}
        assert draws and not any(kernel.kind.data == "draw_weights" for kernel in theirs.values())
        ours = {name: kernel for name, kernel in ours.items() if name not in draws}
        assert list(ours) == list(theirs), target
        for name, kernel in ours.items():
            other = theirs[name]
            assert kernel.kind == other.kind and kernel.dims == other.dims, name
            differing = {key for key in kernel.properties if kernel.properties[key] != other.properties.get(key)}
            assert differing <= KERNEL_CHOICES, (target, name, differing - KERNEL_CHOICES)
            assert kernel.target is not None and kernel.target.data == target

    # Between GPUs even the tile bodies have one shape of plan: the same steps over the same operands.
    first = _kernels(tiled[GPUS[0]])
    for target in GPUS[1:]:
        for name, kernel in _kernels(tiled[target]).items():
            assert kernel.is_dataflow() and first[name].is_dataflow(), (target, name)
            # A kernel of kernels/ is one builder of (dims, tiles): equal tiles, equal bodies.
            if kernel.tiles == first[name].tiles:
                assert str(kernel) == str(first[name]).replace(GPUS[0], target), (target, name)


def test_gpu_scratchpad_footprint_is_the_lds_the_body_plans() -> None:
    _, tiled = _tiled("nemotron_h_tiny.yaml", "bf16")
    for kernel in _kernels(tiled["gfx942"]).values():
        # A plan body names its LDS tiles; a dataflow body allocates its scratch (workgroup memory) and stages
        # the operands of its mma, matrix reductions and broadcasts there (test_rocdl_target.py checks that
        # the lowered kernels' descriptors agree).
        # An mma operand that is a scratch buffer's whole contents is read from it in place: not staged, the
        # buffer's rows padded where the operand's would be.
        in_place = {
            (op, index): padded
            for op in kernel.body.walk()
            if isinstance(op, tile.MmaOp)
            for index, padded in enumerate((True, op.rhs_transposed is not None))
            if tile.read_in_place(op, index) is not None
        }
        padded_allocs = {tile.read_in_place(op, index) for (op, index), padded in in_place.items() if padded}

        def bytes_of(type_: Attribute, padded: bool) -> int:
            shape, size = type_.get_shape(), 2 if type_.element_type == bf16 else 4  # type: ignore[attr-defined]
            return int(np.prod(staged_shape(shape, size) if padded else shape)) * size

        planned = sum(
            bytes_of(op.result.type, op in padded_allocs) if isinstance(op, tile.AllocOp) else op.tile_bytes()
            for op in kernel.body.walk()
            if isinstance(op, tile.AllocOp)
        )
        for op in kernel.body.walk():
            # (operand, whether its rows are padded: an mma's a, and its b where given transposed)
            staged = []
            if isinstance(op, tile.MmaOp):
                staged = [
                    (operand, padded)
                    for index, (operand, padded) in enumerate(((op.lhs, True), (op.rhs, op.rhs_transposed is not None)))
                    if (op, index) not in in_place
                ]
            # (a broadcast of positions, an iota, is each lane's own coordinates: nothing staged)
            if (isinstance(op, tile.BroadcastOp) and not isinstance(op.input.owner, tile.IotaOp)) or (
                isinstance(op, tile.ReduceOp) and len(op.input.type.get_shape()) == 2  # type: ignore[attr-defined]
            ):
                staged = [(op.input, False)]
            for value, padded in staged:
                planned += bytes_of(value.type, padded)
        assert kernel.footprint is not None and int(kernel.footprint.value.data) == planned


@pytest.mark.parametrize("target", GPUS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_nano_12b_fits_every_gpu(target: str, precision: str) -> None:
    """Full Nemotron-Nano-12B shapes tile within the scratchpad of each GPU (the verifier checks each kernel)."""
    spec = _spec("nemotron_nano_12b_v2_base.yaml", precision)
    schedule = lower_to_schedule(build_graph(spec.config, spec.source), spec)
    module = lower_to_tile(schedule, spec, target)
    for kernel in _kernels(module).values():
        assert kernel.footprint is not None

"""The weights a GPU session may draw on the device from the seed instead of uploading them (a model.yaml
without weights): the GPU targets' Tile-IR stage adds draw_weights kernels (kernels/draw.py) to the module
and the plan of their launches as its `tessera.weight_draws` attribute.

A weight is drawn on the device when every tensor it is made of (its `parts`, or itself) is Normal or
Uniform (model/weight_init.py: integer operations on Philox bits and one float32 multiply, which the
kernel reproduces bit for bit), lies as rows of the weight's last dimension, and any norm folded into its
columns is all ones (a drawn model's norms are: W diag(1) = W exactly). It is drawn in the element type the
kernels read it in (bf16 for a matrix kernel's weight at bf16 precision, else f32), a part at a time:

    tessera.weight_draws = [{weight = "layers.3.attn_gqa.qkv_proj.weight",
                             tensor = "layers.3.attn_gqa.q_proj.weight", first_row = 0, rows = 64,
                             kernel = "draw_weights_normal_..."}, ...]

The rest (norms, A_log, D, dt_bias, biases: a few values per channel) the session draws on the host.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute

from tessera.dialects import schedule, tile
from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_schedule_to_tile import kernel_name, new_kernel
from tessera.lowering.gpu.kernel_info import WEIGHT_READERS, weight_element
from tessera.model import philox
from tessera.model.config import ModelConfig
from tessera.model.weight_init import Init, init_of
from tessera.model.weights_layout import TensorSpec, model_tensors

WEIGHT_DRAWS = "tessera.weight_draws"
KIND = "draw_weights"


@dataclass(frozen=True)
class Weight:
    """A weight the programs read: its shape, the tensors it is made of, its folded norm and element type."""

    name: str
    shape: tuple[int, ...]
    parts: tuple[str, ...]
    column_scale: str | None
    element: str


def program_weights(module: ModuleOp) -> dict[str, Weight]:
    """Every weight a launch reads, with the element type its kernels read it in (tiles chosen)."""
    kernels = {op.sym_name.data: op for op in module.ops if isinstance(op, tile.KernelOp)}
    found: dict[str, Weight] = {}
    for launch in module.walk():
        if not isinstance(launch, tile.LaunchOp):
            continue
        kernel = kernels[launch.kernel.root_reference.data]
        readers = WEIGHT_READERS.get(kernel.kind.data, ())
        for index, value in enumerate((*launch.ins, *launch.outs)):
            op = value.owner
            if not isinstance(op, schedule.WeightOp):
                continue
            name = op.weight_name.data
            element = (weight_element(kernel) or "f32") if index in readers else "f32"
            parts = tuple(part.data for part in op.parts.data) if op.parts is not None else (name,)
            scale = op.column_scale.data if op.column_scale is not None else None
            shape = tuple(op.result.type.get_shape())  # type: ignore[attr-defined]
            found.setdefault(name, Weight(name, shape, parts, scale, element))
    return found


def _drawable(weight: Weight, specs: Mapping[str, TensorSpec], config: ModelConfig) -> Init | None:
    """The one Init every part of `weight` has, where the device can draw it; else None."""
    if len(weight.shape) < 2 or any(part not in specs for part in weight.parts):
        return None
    if weight.column_scale is not None and init_of(specs[weight.column_scale], config).kind != "ones":
        return None
    inits = {init_of(specs[part], config) for part in weight.parts}
    cols = weight.shape[-1]
    rows = sum(math.prod(specs[part].shape) // cols for part in weight.parts)
    if len(inits) != 1 or any(specs[part].shape[-1] != cols for part in weight.parts):
        return None
    if rows != math.prod(weight.shape[:-1]):
        return None
    (init,) = inits
    return init if init.random_bits else None


def _dims(init: Init, cols: int, element: str) -> dict[str, Attribute]:
    scale = philox.normal_scale(init.scale) if init.kind == "normal" else philox.uniform_scale(init.scale)
    return {
        "rule": StringAttr(init.kind),
        "scale_bits": IntegerAttr(int(np.array(scale).view(np.uint32)), i64),
        "cols": IntegerAttr(cols, i64),
        "out_dtype": StringAttr(element),
    }


def add_weight_draws(module: ModuleOp, config: ModelConfig) -> list[tile.KernelOp]:
    """Add the draw kernels (bodies not yet written) before the first program and the plan of their launches;
    returns the kernels, to be tiled."""
    specs = {spec.name: spec for spec in model_tensors(config)}
    kernels: dict[str, tile.KernelOp] = {}
    plan: list[Attribute] = []
    for weight in program_weights(module).values():
        init = _drawable(weight, specs, config)
        if init is None:
            continue
        cols = weight.shape[-1]
        dims = _dims(init, cols, weight.element)
        name = kernel_name(KIND, dims)
        if name not in kernels:
            kernels[name] = new_kernel(name, KIND, dims, "tokens", 0)  # a program per row drawn
        first_row = 0
        for part in weight.parts:
            rows = math.prod(specs[part].shape) // cols
            entry: dict[str, str | int] = {
                "weight": weight.name,
                "tensor": part,
                "first_row": first_row,
                "rows": rows,
                "kernel": name,
            }
            plan.append(DictionaryAttr({key: _attr(value) for key, value in entry.items()}))
            first_row += rows
    first_program = next(op for op in module.ops if isinstance(op, func.FuncOp))
    for kernel in kernels.values():
        module.body.block.insert_op_before(kernel, first_program)
    module.attributes[WEIGHT_DRAWS] = ArrayAttr(plan)
    return list(kernels.values())


def _attr(value: str | int) -> Attribute:
    return StringAttr(value) if isinstance(value, str) else IntegerAttr(value, i64)


def weight_draws(module: ModuleOp) -> list[dict[str, Any]]:
    """The module's plan of draws (none where it has no `tessera.weight_draws`: an x86 module)."""
    plan = module.attributes.get(WEIGHT_DRAWS)
    if not isinstance(plan, ArrayAttr):
        return []
    return [dict(plain_dict(entry)) for entry in plan.data if isinstance(entry, DictionaryAttr)]

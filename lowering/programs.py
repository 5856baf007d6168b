"""The target-neutral part of lowering Tile-IR programs for a runtime: each program (@prefill, @decode) as
the list of its launches, the buffer plan's slots, the weights and the state. Each target adds what its
launches need (argument order, scalars, grid geometry, weight packing) through `launch_fields`.

An argument is `{"ids": true}` (the token ids), `{"weight": name}`, `{"state": name}` or `{"buffer": slot,
"features": F, "dtype": ...}` (a [tokens, F] view of an arena slot; rank 1 buffers say so). A GPU program's
`weight_draws` are the launches that draw a seeded model's weights on the device: `{"drawn": {"weight":
name, "first_row": r, "rows": n}}` (the rows it writes) and `{"key": stream}` (the tensor's Philox stream).

`kernels` records, per kernel, what it was compiled for: its kind and Tile-IR dims, the signature of each
argument (runtime/program_check.arg_signature) and the launch fields that are the kernel's own (the
target's `kernel_fields`: its grid, block size, shared bytes). The runtime checks every launch against it
before any kernel runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, MemRefType, ModuleOp
from xdsl.ir import BlockArgument, SSAValue

from tessera.dialects import schedule, tile
from tessera.dialects.schedule import SLOT_BYTES
from tessera.dialects.tile import plain_dict
from tessera.errors import TesseraError
from tessera.lowering.weight_draws import weight_draws
from tessera.model.weight_init import stream_of
from tessera.runtime.program_check import FORMAT_VERSION, kernel_signatures

# (kernel, described args in launch order, program name, weights table) -> the launch's fields
LaunchFields = Callable[[tile.KernelOp, list[dict[str, Any]], str, dict[str, dict[str, Any]]], dict[str, Any]]


class ProgramLoweringError(TesseraError):
    """A Tile-IR module whose programs cannot be described (buffers not planned, an unknown operand)."""


def _describe(value: SSAValue, slots: dict[SSAValue, int]) -> dict[str, Any]:
    """How the runtime finds a launch operand: the token ids, a weight, a state, or an arena buffer."""
    owner = value.owner
    if isinstance(value, BlockArgument):
        return {"ids": True}
    if isinstance(owner, schedule.WeightOp):
        return {"weight": owner.weight_name.data}
    if isinstance(owner, schedule.StateRefOp):
        return {"state": owner.state.string_value()}
    if isinstance(owner, schedule.AllocOp):
        assert isinstance(value.type, MemRefType)
        shape = value.type.get_shape()
        described: dict[str, Any] = {"buffer": slots[value], "dtype": str(value.type.element_type)}
        if len(shape) == 1:
            return {**described, "features": 1, "rank": 1}  # one value per token
        return {**described, "features": int(shape[1])}
    raise ProgramLoweringError(f"{owner}: operand of a launch is not a weight, state, buffer or the token ids")


def describe_programs(
    module: ModuleOp, format_name: str, launch_fields: LaunchFields, kernel_fields: tuple[str, ...]
) -> dict[str, Any]:
    """The launch lists of every program, with the weights and state they use and the kernels' signatures;
    `kernel_fields`: the fields `launch_fields` gives that a kernel was compiled for (the same in every
    launch of it)."""
    by_name = {op.sym_name.data: op for op in module.ops if isinstance(op, tile.KernelOp)}
    weights: dict[str, dict[str, Any]] = {}
    states: dict[str, dict[str, Any]] = {}
    programs: dict[str, Any] = {}
    for op in module.ops:
        if isinstance(op, schedule.StateOp):
            states[op.sym_name.data] = {
                "shape": list(op.type.get_shape()),
                "dtype": str(op.type.element_type),
                "kind": op.kind.data,
                "layer": int(op.layer.value.data),
            }
    for program in [op for op in module.ops if isinstance(op, func.FuncOp)]:
        slots: dict[SSAValue, int] = {}
        for op in program.walk():
            if isinstance(op, schedule.AllocOp):
                if op.slot is None:
                    raise ProgramLoweringError(
                        f"@{program.sym_name.data}: buffers not planned (run tessera-schedule-plan-buffers)"
                    )
                slots[op.result] = int(op.slot.value.data)
            elif isinstance(op, schedule.WeightOp):
                entry: dict[str, Any] = {"shape": list(op.result.type.get_shape())}  # type: ignore[attr-defined]
                if op.parts is not None:
                    entry["parts"] = [part.data for part in op.parts.data]
                if op.column_scale is not None:
                    entry["column_scale"] = op.column_scale.data
                weights.setdefault(op.weight_name.data, entry)
        launches = []
        for op in program.walk():
            if not isinstance(op, tile.LaunchOp):
                continue
            kernel = by_name[op.kernel.string_value()]
            args = [_describe(value, slots) for value in (*op.ins, *op.outs)]
            fields = launch_fields(kernel, args, program.sym_name.data, weights)
            launch: dict[str, Any] = {"kernel": kernel.sym_name.data, "kind": kernel.kind.data, **fields}
            launches.append(launch)
        returned = next(op for op in program.walk() if isinstance(op, func.ReturnOp))
        programs[program.sym_name.data] = {
            "launches": launches,
            "slots": _slot_bytes(program),
            "result": _describe(returned.operands[0], slots),
        }
    described = {"format": format_name, "format_version": FORMAT_VERSION, "programs": programs,
                 "weights": weights, "states": states}  # fmt: skip
    draws = [_draw_launch(draw, by_name[draw["kernel"]], launch_fields, weights) for draw in weight_draws(module)]
    if draws:
        described["weight_draws"] = draws
    # Signatures read the final weights table: a weight's packing is set by the launches that read it.
    signatures = kernel_signatures(described, kernel_fields)
    described["kernels"] = {
        name: {"kind": by_name[name].kind.data, "dims": plain_dict(by_name[name].dims), **signature}
        for name, signature in signatures.items()
    }
    return described


def _draw_launch(draw: dict[str, Any], kernel: tile.KernelOp, launch_fields: LaunchFields,
                 weights: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The launch of a weight draw (lowering/weight_draws.py): its weight's rows [first_row, first_row + rows)
    written from the tensor's Philox stream (`key`: the session's seed and the stream)."""
    target = {"weight": draw["weight"], "first_row": draw["first_row"], "rows": draw["rows"]}
    args: list[dict[str, Any]] = [{"drawn": target}, {"key": stream_of(draw["tensor"])}]
    fields = launch_fields(kernel, args, "weight_draws", weights)
    return {"kernel": kernel.sym_name.data, "kind": kernel.kind.data, "tensor": draw["tensor"], **fields}


def _slot_bytes(program: func.FuncOp) -> list[int]:
    """Bytes per token of each arena slot, as tessera-schedule-plan-buffers recorded them."""
    widths = program.attributes.get(SLOT_BYTES)
    if not isinstance(widths, DenseArrayBase):
        raise ProgramLoweringError(f"@{program.sym_name.data}: buffers not planned (run tessera-schedule-plan-buffers)")
    return [int(width) for width in widths.get_values()]

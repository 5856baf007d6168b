"""tessera-schedule-plan-buffers: give every [tokens, features] buffer of a program a slot in an arena,
reusing slots by liveness, and report the memory the programs will allocate.

A buffer is live from the op that allocates it to its last use; a slot whose buffer is dead is reused by
the next allocation that fits (the smallest that does; else the widest free slot grows). Per program the
arena is sum(slot widths) bytes per token. Options: none.

Written on each `tessera.schedule.alloc`: `slot`; on each program: `tessera.slot_bytes`, the bytes per
token of each slot (what the runtime allocates). Written on the module:
    tessera.arena_bytes_per_token   {prefill = .., decode = ..}: the arena of each program, per token
    tessera.state_bytes             conv_state + ssm_state of every Mamba layer, per sequence
    tessera.kv_cache_bytes          k_cache + v_cache of every attention layer, per sequence (at capacity)
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, DictionaryAttr, IntegerAttr, MemRefType, ModuleOp, i64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from tessera.dialects import schedule
from tessera.dialects.schedule import SLOT_BYTES, element_bytes


def _bytes(memref: MemRefType, rows: int = 1) -> int:
    count = rows
    for dim in memref.get_shape():
        count *= dim if dim >= 0 else 1
    return count * element_bytes(memref.element_type)


def plan_program(program: func.FuncOp) -> int:
    """Assign slots in `program`, record their widths on it; returns its arena bytes per token."""
    ops: list[Operation] = list(program.body.block.ops)
    position = {op: index for index, op in enumerate(ops)}
    last_use: dict[SSAValue, int] = {}
    for op in ops:
        for operand in op.operands:
            last_use[operand] = position[op]
    widths: list[int] = []
    busy_until: list[int] = []  # index of the op after which each slot is free
    for op in ops:
        if not isinstance(op, schedule.AllocOp):
            continue
        assert isinstance(op.result.type, MemRefType)
        need = _bytes(op.result.type)
        here = position[op]
        free = [s for s in range(len(widths)) if busy_until[s] < here]
        fitting = [s for s in free if widths[s] >= need]
        if fitting:
            slot = min(fitting, key=lambda s: widths[s])
        elif free:
            slot = max(free, key=lambda s: widths[s])
            widths[slot] = need
        else:
            slot = len(widths)
            widths.append(need)
            busy_until.append(0)
        busy_until[slot] = last_use.get(op.result, here)
        op.properties["slot"] = IntegerAttr(slot, i64)
    program.attributes[SLOT_BYTES] = DenseArrayBase.from_list(i64, widths)
    return sum(widths)


def plan_buffers(module: ModuleOp) -> None:
    arena = {}
    for program in [op for op in module.ops if isinstance(op, func.FuncOp)]:
        arena[program.sym_name.data] = IntegerAttr(plan_program(program), i64)
    states = [op for op in module.ops if isinstance(op, schedule.StateOp)]
    mamba = sum(_bytes(s.type) for s in states if s.kind.data in ("conv_state", "ssm_state"))
    kv = sum(_bytes(s.type) for s in states if s.kind.data in ("k_cache", "v_cache"))
    module.attributes["tessera.arena_bytes_per_token"] = DictionaryAttr(arena)
    module.attributes["tessera.state_bytes"] = IntegerAttr(mamba, i64)
    module.attributes["tessera.kv_cache_bytes"] = IntegerAttr(kv, i64)


@dataclass(frozen=True)
class SchedulePlanBuffersPass(ModulePass):
    name = "tessera-schedule-plan-buffers"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        plan_buffers(op)

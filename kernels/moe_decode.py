"""The decode step's MoE experts on the GPUs: one token's top_k selected experts as GEMVs that read only
those experts' weights (kernels/moe.py's moe_experts semantics, split in two launches through a scratch state
of the decode program, lowering/decode_kernels.py):

moe_experts_up(x (f32 | bf16) [T, L], ids i64 [T, K], up [E, F, L], hidden f32 [K, F])
    one program per choice j and `columns` rows of up (program j blocks + b): e = ids[0, j],
        hidden[j, f] = relu2(sum_l x[0, l] up[e, f, l])
moe_experts_down(hidden f32 [K, F], ids i64 [T, K], down [E, L, F], contrib f32 [T, K L])
    one program per choice j and `columns` rows of down: contrib[0, j L + l] = sum_f h[j, f] down[e, l, f]

Each row a GEMV of kernels/gemm_blocks.py (gemv_sums): x and h rounded to the weight's element first, as the
prefill's products round their operands, sums in f32. A choice of no expert (an id outside [0, E)) writes
nothing, as moe_experts does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from xdsl.dialects.builtin import MemRefType, bf16, f32, i64
from xdsl.ir import Block, SSAValue

from tessera.kernels.builder import INDEX, Dims, KernelBuilder
from tessera.kernels.gemm_blocks import gemv_sums
from tessera.kernels.moe import expert_weight_layout
from tessera.kernels.rows import rows


def hidden_type(dims: Dims) -> MemRefType:
    """Each choice's hidden row: [K, F] f32."""
    return MemRefType(f32, [int(dims["top_k"]), int(dims["ffn"])])


def _weights(dims: Dims, tiles: Mapping[str, int], role: str) -> MemRefType:
    return expert_weight_layout(role)(dims, {"rows": 1, "weight_bf16": tiles.get("weight_bf16", 0)})


def _choice(k: KernelBuilder, ids: SSAValue, n: int, experts: int, columns: int) -> tuple[SSAValue, ...]:
    """(choice j, its expert e clamped into [0, E), whether the id is an expert, the program's first row)."""
    blocks = -(-n // columns)
    j = k.divsi(k.program_id, k.index(blocks))
    first = k.muli(k.subi(k.program_id, k.muli(j, k.index(blocks))), k.index(columns))
    expert = k.load(ids, [k.index(0), j])
    valid = k.andi(k.cmpi("sge", expert, k.i64(0)), k.cmpi("slt", expert, k.i64(experts)))
    clamped = k.cast(k.minsi(k.maxsi(expert, k.i64(0)), k.i64(experts - 1)), INDEX)
    return j, clamped, valid, first


def _stores(k: KernelBuilder, totals: list[SSAValue], first: SSAValue, n: int, valid: SSAValue,
            store: Callable[[SSAValue, SSAValue], None]) -> None:  # fmt: skip
    """store(row, total) for each of the program's rows inside N, where the choice is an expert."""
    for c, total in enumerate(totals):
        row = k.addi(first, k.index(c))
        with k.when(k.andi(valid, k.cmpi("slt", row, k.index(n)))):
            store(row, total)


def moe_experts_up(dims: Dims, tiles: Mapping[str, int]) -> Block:
    experts, top_k, ffn, latent = (int(dims[key]) for key in ("num_experts", "top_k", "ffn", "latent"))
    x_element = bf16 if str(dims.get("x_dtype", "f32")) == "bf16" else f32
    buffers = {"x": rows(latent, x_element), "ids": rows(top_k, i64), "up": _weights(dims, tiles, "up"),
               "hidden": hidden_type(dims)}  # fmt: skip
    k = KernelBuilder(buffers)
    x, ids, up, hidden = k.buffers
    j, expert, valid, first = _choice(k, ids, ffn, experts, tiles["columns"])
    totals = gemv_sums(k, ffn, latent, tiles, (x, [k.index(0)]), (up, [expert]), first)

    def store(row: SSAValue, total: SSAValue) -> None:
        positive = k.maximumf(total, k.f32(0.0))
        k.store(k.mulf(positive, positive), hidden, [j, row])

    _stores(k, totals, first, ffn, valid, store)
    return k.finish()


def moe_experts_down(dims: Dims, tiles: Mapping[str, int]) -> Block:
    experts, top_k, ffn, latent = (int(dims[key]) for key in ("num_experts", "top_k", "ffn", "latent"))
    buffers = {"hidden": hidden_type(dims), "ids": rows(top_k, i64), "down": _weights(dims, tiles, "down"),
               "contrib": rows(top_k * latent, f32)}  # fmt: skip
    k = KernelBuilder(buffers)
    hidden, ids, down, contrib = k.buffers
    j, expert, valid, first = _choice(k, ids, latent, experts, tiles["columns"])
    totals = gemv_sums(k, latent, ffn, tiles, (hidden, [j]), (down, [expert]), first)
    base = k.muli(j, k.index(latent))
    _stores(
        k, totals, first, latent, valid, lambda row, total: k.store(total, contrib, [k.index(0), k.addi(base, row)])
    )
    return k.finish()


KERNELS = {"moe_experts_up": moe_experts_up, "moe_experts_down": moe_experts_down}
# The stacks are the prefill experts' (converted once at load to the weight element): launched as the model's.
PACKED = {
    "moe_experts_up": {"up": lambda dims, tiles: _weights(dims, tiles, "up")},
    "moe_experts_down": {"down": lambda dims, tiles: _weights(dims, tiles, "down")},
}

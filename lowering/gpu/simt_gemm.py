"""The SIMT GEMM (FMA, no matrix instruction): what a GPU runs for a projection whose operands the arch's
matrix unit does not take in float32 — on Hopper under --precision fp32, since its only f32 tensor-core path
is tf32 (arch.py). Semantics and operands are lowering/rocdl/gemm.py's: x [tokens, K],
W [N, K] (f32), [bias [N]], [row_scale [tokens]], y [tokens, N] (f32 | bf16); epilogues store, accumulate,
relu2.

A workgroup of 256 threads computes a block_m x block_n (64 x 64) tile of y, thread t = 16 ty + tx owning
the 4 x 4 outputs at rows ty + 16 i and columns tx + 16 j (strided, so that the 16 tx of a warp read 16
different W rows of one K column: with the tiles' rows padded by one element (row stride 17 words) those
16 reads hit 16 different banks, and the x reads of a warp are 2 broadcasts). Per K step of block_k (16)
the threads stage x[block_m, block_k] and W[block_n, block_k] into shared memory (thread t copies 4
consecutive K of row t / 4 of each, zero-filled past tokens, N and K), then each thread runs block_k
rank-1 updates of its 16 accumulators; the next step's global loads are issued into registers before this
step's arithmetic, as in the ROCDL GEMM. Sums run in K order per output, in f32.
"""

from __future__ import annotations

from tessera.lowering.gpu.gemm_staging import fetch_k4, store_result
from tessera.lowering.gpu.simt import simt_builder
from tessera.lowering.rocdl.kernel_text import GpuKernel, Grid, KernelInfo

OUTPUTS = 4  # per thread along rows and along columns
LANES = 16  # threads along each side of the tile


def emit_gemm_simt(info: KernelInfo) -> GpuKernel:
    n, k = info.dim("n"), info.dim("k")
    bias, row_scale = bool(info.dims.get("bias", 0)), bool(info.dims.get("row_scale", 0))
    x_dtype, y_dtype = str(info.dims.get("x_dtype", "f32")), str(info.dims.get("y_dtype", "f32"))
    weight_dtype = next(tile.element for tile in info.lds if tile.name == "weight")
    block_m, block_n, block_k, threads = (info.tile(key) for key in ("block_m", "block_n", "block_k", "threads"))
    assert threads == LANES * LANES and block_m == block_n == LANES * OUTPUTS, (info.name, info.tiles)
    assert block_k * block_m == 4 * threads, f"{info.name}: one 4-element chunk of each tile per thread"
    epilogue = str(info.dims["epilogue"])
    operands = ["x", "w", *(["bias"] if bias else []), *(["row_scale"] if row_scale else []), "y"]
    b = simt_builder(info, operands)

    tid = b.thread_id()
    tx, ty = b.rem(tid, b.index(LANES)), b.div(tid, b.index(LANES))
    n0 = b.mul(b.block_id("x"), b.index(block_n))
    m0 = b.mul(b.block_id("y"), b.index(block_m))
    tokens = b.to_index(b.tokens)
    stage_row = b.div(tid, b.index(block_k // 4))
    stage_k = b.mul(b.rem(tid, b.index(block_k // 4)), b.index(4))

    def fetch(k0: str) -> list[str]:
        return [
            fetch_k4(b, "x", x_dtype, "f32", k, m0, tokens, stage_row, stage_k, k0),
            fetch_k4(b, "w", weight_dtype, "f32", k, n0, b.index(n), stage_row, stage_k, k0),
        ]

    rows = [b.add(ty, b.index(LANES * i)) for i in range(OUTPUTS)]
    cols = [b.add(tx, b.index(LANES * j)) for j in range(OUTPUTS)]
    carried = [(b.f32(0.0), "f32")] * (OUTPUTS * OUTPUTS) + [(value, "vector<4xf32>") for value in fetch(b.index(0))]
    with b.loop(b.index(0), b.index(k), b.index(block_k), carried, unroll=False) as loop:
        accs = list(loop.args[: OUTPUTS * OUTPUTS])
        staged_x, staged_w = loop.args[OUTPUTS * OUTPUTS :]
        b.lds_store_vector(staged_x, "x", [stage_row, stage_k], 4)
        b.lds_store_vector(staged_w, "weight", [stage_row, stage_k], 4)
        b.barrier()
        upcoming = fetch(b.add(loop.iv, b.index(block_k)))  # past K: zero-filled, never stored
        for kk in range(block_k):
            column = b.index(kk)
            a = [b.lds_load("x", [row, column]) for row in rows]
            w = [b.lds_load("weight", [col, column]) for col in cols]
            for i in range(OUTPUTS):
                for j in range(OUTPUTS):
                    index = i * OUTPUTS + j
                    accs[index] = b.fadd(b.fmul(a[i], w[j]), accs[index])
        b.barrier()  # every thread is done reading this step's tiles before the next step overwrites them
        loop.yield_(*accs, *upcoming)

    for i in range(OUTPUTS):
        row = b.add(m0, rows[i])
        for j in range(OUTPUTS):
            col = b.add(n0, cols[j])
            inside = b.let("p", f"arith.andi {b.lt(row, tokens)}, {b.lt(col, b.index(n))} : i1")
            with b.if_else(inside):
                store_result(b, loop.results[i * OUTPUTS + j], row, col, n, bias, row_scale, epilogue, y_dtype)
    grid = Grid(x=(n, block_n), y=("tokens", block_m))
    return GpuKernel(info.name, b.render(), threads, grid, sum(tile.bytes for tile in info.lds))

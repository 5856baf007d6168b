"""The ROCDL GEMM: y[M, N] (op)= row_scale[m] * (x[M, K] @ W[N, K]^T) + bias[n], every projection.

Operands (launch order): x [tokens, K] (f32 | bf16), W [N, K] (the weight's own row-major layout, f32 |
bf16), [bias [N] f32], [row_scale [tokens] f32], y [tokens, N] (f32 | bf16). Epilogues: "store" y = acc,
"accumulate" y += acc (the residual add), "relu2" y = max(acc, 0)^2.

A workgroup of 4 waves (2 x 2) computes a block_m x block_n tile of y (workgroup (bx, by): columns
bx*block_n, rows by*block_m); each wave owns a (block_m / 2) x (block_n / 2) quadrant of it, a grid of
16x16 MFMA tiles whose accumulators stay in registers for the whole K loop. Per K step of block_k the
threads stage x[block_m, block_k] and W[block_n, block_k] into LDS (K contiguous, each row padded by 8
bytes: the fragment reads of 16 rows hit distinct banks), converted to the MFMA element type; each wave
then reads one A fragment per tile row and one B fragment per tile column (lowering/rocdl/mfma.py) and
issues tiles_m * tiles_n MFMAs per mma_k. The next K step's global loads are issued into registers before
this step's MFMAs (software pipelining through the loop's carried values), so their latency overlaps the
matrix work; LDS is written only after the barrier that ends the previous step's reads.
Out-of-range rows, columns and K are zero-filled when staged and skipped when stored, so any M, N, K work.
"""

from __future__ import annotations

from tessera.lowering.gpu.gemm_staging import fetch_k4, store_result
from tessera.lowering.rocdl import mfma
from tessera.lowering.rocdl.kernel_text import GpuKernel, GpuKernelBuilder, Grid, KernelInfo


def emit_gemm(info: KernelInfo) -> GpuKernel:
    n, k = info.dim("n"), info.dim("k")
    bias, row_scale = bool(info.dims.get("bias", 0)), bool(info.dims.get("row_scale", 0))
    x_dtype, y_dtype = str(info.dims.get("x_dtype", "f32")), str(info.dims.get("y_dtype", "f32"))
    weight_dtype = next(tile.element for tile in info.lds if tile.name == "weight")
    element = info.mma_element or "f32"
    op = mfma.Mfma.for_element(info.arch, element)
    block_m, block_n, block_k, threads = (info.tile(key) for key in ("block_m", "block_n", "block_k", "threads"))
    assert threads == 4 * 64 and block_m % 32 == 0 and block_n % 32 == 0, "2 x 2 waves of 16x16 MFMA tiles"
    tiles_m, tiles_n = block_m // 32, block_n // 32  # MFMA tiles per wave quadrant
    epilogue = str(info.dims["epilogue"])
    operands = ["x", "w", *(["bias"] if bias else []), *(["row_scale"] if row_scale else []), "y"]
    b = GpuKernelBuilder(info.name, operands, info.lds, threads)

    tid = b.thread_id()
    n0 = b.mul(b.block_id("x"), b.index(block_n))
    m0 = b.mul(b.block_id("y"), b.index(block_m))
    tokens = b.to_index(b.tokens)
    wave = b.div(tid, b.index(64))
    lanes = mfma.WaveLanes(b, b.rem(tid, b.index(64)))
    wave_row = b.mul(b.div(wave, b.index(2)), b.index(block_m // 2))
    wave_col = b.mul(b.rem(wave, b.index(2)), b.index(block_n // 2))
    # Staging: per pass, thread t copies 4 consecutive K elements of row t / (block_k / 4) of a tile.
    rows_per_pass = threads // (block_k // 4)
    stage_row = b.div(tid, b.index(block_k // 4))
    stage_k = b.mul(b.rem(tid, b.index(block_k // 4)), b.index(4))
    copies = [("x", "x", x_dtype, m0, tokens, r) for r in range(block_m // rows_per_pass)]
    copies += [("w", "weight", weight_dtype, n0, b.index(n), r) for r in range(block_n // rows_per_pass)]
    storage = "vector<4xi16>" if element == "bf16" else "vector<4xf32>"

    def fetch(k0: str) -> list[str]:
        """This thread's share of the K step at k0, in registers (as the LDS tiles store it)."""
        return [
            fetch_k4(
                b, operand, dtype, element, k, row0, rows, b.add(stage_row, b.index(r * rows_per_pass)), stage_k, k0
            )
            for operand, _, dtype, row0, rows, r in copies
        ]

    zero = mfma.zero_accumulator(b)
    accumulators = [(zero, mfma.ACC)] * (tiles_m * tiles_n)
    prefetched = [(value, storage) for value in fetch(b.index(0))]
    with b.loop(b.index(0), b.index(k), b.index(block_k), accumulators + prefetched) as loop:
        accs, staged = list(loop.args[: len(accumulators)]), loop.args[len(accumulators) :]
        for (_, tile, _, _, _, r), value in zip(copies, staged, strict=True):
            b.lds_store_vector(value, tile, [b.add(stage_row, b.index(r * rows_per_pass)), stage_k], 4)
        b.barrier()
        upcoming = fetch(b.add(loop.iv, b.index(block_k)))  # past K: zero-filled, never stored
        for kk in range(0, block_k, op.k):
            a = [
                mfma.read_k_contiguous(b, op, "x", lanes, b.add(wave_row, b.index(16 * i)), b.index(kk))
                for i in range(tiles_m)
            ]
            for j in range(tiles_n):
                w = mfma.read_k_contiguous(b, op, "weight", lanes, b.add(wave_col, b.index(16 * j)), b.index(kk))
                for i in range(tiles_m):
                    accs[i * tiles_n + j] = mfma.multiply(b, op, a[i], w, accs[i * tiles_n + j])
        b.barrier()  # every wave is done reading this step's tiles before the next step overwrites them
        loop.yield_(*accs, *upcoming)

    for index in range(tiles_m * tiles_n):
        i, j = divmod(index, tiles_n)
        acc = loop.results[index]
        col = b.add(n0, b.add(wave_col, b.add(b.index(16 * j), lanes.col)))
        for item in range(4):
            row = b.add(m0, b.add(wave_row, b.add(b.index(16 * i), mfma.accumulator_row(b, lanes, item))))
            inside = b.let("p", f"arith.andi {b.lt(row, tokens)}, {b.lt(col, b.index(n))} : i1")
            with b.if_else(inside):
                value = mfma.element(b, acc, item)
                store_result(b, value, row, col, n, bias, row_scale, epilogue, y_dtype)
    grid = Grid(x=(n, block_n), y=("tokens", block_m))
    return GpuKernel(info.name, b.render(), threads, grid, sum(tile.bytes for tile in info.lds))

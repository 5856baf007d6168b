"""The x86 GEMM / GEMV kernel emitter: y[M, N] (op)= x[M, K] @ W[N, K]^T, every projection of the model.

Algorithm (GotoBLAS/BLIS-style, with the roles of the operands chosen for row-major y):

* The weight is packed ONCE at load time (`pack_weight`) into panels of `nr` output columns,
  `packed[P][K][nr]` (P = ceil(N / nr), N tail zero-padded), so one k step of a panel is `nr`
  contiguous values: `nr / 16` 512-bit loads.
* The micro-kernel keeps an `mr x nr` block of y in `mr * nr / 16` vector<16xf32> accumulators
  (6 x 64 = 24 zmm registers on AVX-512). Each k step loads the `nr / 16` weight vectors once,
  broadcasts x[m, k] of each of the `mr` rows, and issues `mr * nr / 16` FMAs.
* Loop nest of one call, for panels [begin, end):

      for m0 in 0..M step mc:                 row group: x[m0:m0+mc, kb:kb+kc] is reused by every panel
        for kb in 0..K step kc:               K block (kc = K when M <= mr or y is bf16: one pass per panel)
          for p in begin..end:                packed[p, kb:kb+kc, :] (kc x nr) stays in L2 for the group
            for each mr-row block of the group, then the group's tail as blocks of the powers of two
            below mr (4, 2, 1 rows for mr = 6), one per bit of the tail length:
              micro-kernel over k in [kb, kb+kc); y tile = prev + row_scale * acc, where prev is 0
              (first K block, "store"/"relu2") or the y tile (later blocks, or "accumulate"); the last
              K block adds the bias and applies relu2.
  Blocks of few rows (the GEMV case M = 1) use several independent accumulator sets across the
  unrolled k steps, so that FMA latency never bounds the weight stream.
* y columns past N (the last panel's zero padding) are masked off by `vector.transfer_write`
  (in_bounds = false) only when N is not a multiple of nr.

Kernel ABI (`emit_gemm`), PACKED = packed_weight_shape(spec, tiles) = (P, K, nr):

    func.func @name(%x: memref<?xKx X>,                X = spec.x_dtype
                    %w: memref<P x K x nr x W>,         W = spec.weight_dtype
                    [%bias: memref<Nxf32>]              (spec.bias),
                    [%row_scale: memref<?xf32>]         (spec.row_scale; M entries),
                    %y: memref<?xNx Y>,                 Y = spec.y_dtype
                    %begin: index, %end: index)         (the range of panels this call computes)

Element types are f32 or bf16 (bfloat16 bits, numpy uint16), each independently. M = dim 0 of x (and
of y). For m < M and n in [begin*nr, min(end*nr, N)), in f32 (bf16 operands widened exactly):
    acc = row_scale[m] * sum_k x[m, k] * W[n, k] + bias[n]     (factors present per the spec)
    "store": y = acc;  "accumulate": y += acc;  "relu2": y = max(acc, 0)^2
with a bf16 y rounded to nearest even as it is stored ("store" / "relu2" only; a bf16 y needs a single K
block, tiles.kc >= K, so that no partial sum is ever rounded: choose_tiles gives one). No other element of
y is read or written, so two threads may run disjoint panel ranges at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tessera.lowering.mlir_text import MlirBuilder, f32_to_bf16_bits
from tessera.runtime.weights import pack_panels
from tessera.tiling.x86_gemm import (
    VECTOR,
    GemmSpec,
    GemmTiles,
    packed_weight_shape,
    panel_count,
)

VEC = f"vector<{VECTOR}xf32>"


def pack_weight(weight: np.ndarray, spec: GemmSpec, tiles: GemmTiles) -> np.ndarray:
    """W[n, k] (nn.Linear layout) -> packed[p, k, j] = W[p * nr + j, k], zero past n, 64-byte aligned
    (the runtime's packing, which reads the layout this kernel defines from program.json)."""
    if weight.shape != (spec.n, spec.k):
        raise ValueError(f"weight shape {weight.shape} does not match the GEMM ({spec.n}, {spec.k})")
    return pack_panels(weight, tiles.nr, spec.weight_dtype)


def footprint_bytes(spec: GemmSpec, tiles: GemmTiles) -> int:
    """Fast memory one call's inner loop keeps live: a panel's packed weight block (kc x nr, held in L2
    while the row blocks stream past), one row block's x (mr x kc, L1) and the accumulators (mr x nr,
    registers). The x group (mc x kc) is reused from L3 and not counted."""
    weight_bytes = 2 if spec.weight_dtype == "bf16" else 4
    x_bytes = 2 if spec.x_dtype == "bf16" else 4
    return tiles.kc * tiles.nr * weight_bytes + tiles.mr * tiles.kc * x_bytes + tiles.mr * tiles.nr * 4


# --------------------------------------------------------------------------------------------------
# MLIR text emission


@dataclass(frozen=True)
class _Kernel:
    """What the emitters of one kernel share: the spec, tiles and the SSA names of the arguments."""

    spec: GemmSpec
    tiles: GemmTiles

    @property
    def x_type(self) -> str:
        return f"memref<?x{self.spec.k}x{self.spec.x_dtype}>"

    @property
    def w_type(self) -> str:
        shape = "x".join(map(str, packed_weight_shape(self.spec, self.tiles)))
        return f"memref<{shape}x{self.spec.weight_dtype}>"

    @property
    def y_type(self) -> str:
        return f"memref<?x{self.spec.n}x{self.spec.y_dtype}>"

    @property
    def columns_masked(self) -> bool:
        """Whether the last panel reaches past N, so that y and bias accesses need masks."""
        return self.spec.n % self.tiles.nr != 0

    def arguments(self) -> str:
        args = [f"%x: {self.x_type}", f"%w: {self.w_type}"]
        if self.spec.bias:
            args.append(f"%bias: memref<{self.spec.n}xf32>")
        if self.spec.row_scale:
            args.append("%row_scale: memref<?xf32>")
        args += [f"%y: {self.y_type}", "%begin: index", "%end: index"]
        return ", ".join(args)


@dataclass(frozen=True)
class _Step:
    """SSA values of the enclosing loops that a row block reads."""

    panel: str  # %p
    col0: str  # first column of the panel, p * nr
    kb: str  # first k of the K block
    kmain: str  # end of the unrolled k loop
    kend: str  # end of the K block
    load_prev: str | None  # i1: read y before adding (None: statically always read)
    last: str | None  # i1: the last K block (None: statically always)


def emit_gemm(name: str, spec: GemmSpec, tiles: GemmTiles) -> str:
    """MLIR text of one `func.func @name` computing the GEMM with this blocking (ABI in the module docstring)."""
    if spec.y_dtype == "bf16" and tiles.kc < spec.k:
        raise ValueError(
            f"a bf16 y needs a single K block (tiles.kc >= k = {spec.k}, got {tiles.kc}): "
            "partial sums would be rounded to bf16 between K blocks"
        )
    kernel = _Kernel(spec, tiles)
    body = MlirBuilder()
    _emit_loop_nest(body, kernel)
    return body.function(name, kernel.arguments())


def _emit_loop_nest(b: MlirBuilder, kn: _Kernel) -> None:
    spec, tiles = kn.spec, kn.tiles
    c0, c1 = b.index(0), b.index(1)
    rows = b.let("m", f"memref.dim %x, {c0} : {kn.x_type}")
    # One row block or fewer (decode): no K blocking, so each panel is one sequential weight stream.
    few = b.let("few", f"arith.cmpi ule, {rows}, {b.index(tiles.mr)} : index")
    kstep = b.let("kstep", f"arith.select {few}, {b.index(spec.k)}, {b.index(tiles.kc)} : index")
    with b.loop(c0, rows, b.index(tiles.mc)) as group:
        m0 = group.iv
        mrem = b.let("mrem", f"arith.subi {rows}, {m0} : index")
        mlen = b.let("mlen", f"arith.minui {mrem}, {b.index(tiles.mc)} : index")
        nfull = b.let("nfull", f"arith.divui {mlen}, {b.index(tiles.mr)} : index")
        tail = b.let("tail", f"arith.remui {mlen}, {b.index(tiles.mr)} : index")
        with b.loop(c0, b.index(spec.k), kstep) as k_block:
            step = _emit_k_block_bounds(b, kn, k_block.iv, kstep)
            with b.loop("%begin", "%end", c1) as panel:
                col0 = b.let("col", f"arith.muli {panel.iv}, {b.index(tiles.nr)} : index")
                step = replace(step, panel=panel.iv, col0=col0)
                _emit_full_row_blocks(b, kn, step, m0, nfull)
                _emit_tail_row_blocks(b, kn, step, m0, nfull, tail)


def _emit_k_block_bounds(b: MlirBuilder, kn: _Kernel, kb: str, kstep: str) -> _Step:
    """Bounds of the K block [kb, kend) and its unrolled part, and whether it is the first / last."""
    spec, tiles = kn.spec, kn.tiles
    krem = b.let("krem", f"arith.subi {b.index(spec.k)}, {kb} : index")
    klen = b.let("klen", f"arith.minui {krem}, {kstep} : index")
    kend = b.let("kend", f"arith.addi {kb}, {klen} : index")
    kodd = b.let("kodd", f"arith.remui {klen}, {b.index(tiles.ku)} : index")
    kmain = b.let("kmain", f"arith.subi {kend}, {kodd} : index")
    load_prev = None
    if spec.epilogue != "accumulate":  # "store" / "relu2" start from zero in the first K block
        load_prev = b.let("later", f"arith.cmpi ne, {kb}, {b.index(0)} : index")
    last = None
    if spec.k > tiles.kc:  # several K blocks (when M > mr): bias and relu2 wait for the last one
        last = b.let("last", f"arith.cmpi eq, {kend}, {b.index(spec.k)} : index")
    return _Step(panel="", col0="", kb=kb, kmain=kmain, kend=kend, load_prev=load_prev, last=last)  # panel: later


def _emit_full_row_blocks(b: MlirBuilder, kn: _Kernel, step: _Step, m0: str, nfull: str) -> None:
    with b.loop(b.index(0), nfull, b.index(1)) as block:
        offset = b.let("off", f"arith.muli {block.iv}, {b.index(kn.tiles.mr)} : index")
        row = b.let("row", f"arith.addi {m0}, {offset} : index")
        _emit_row_block(b, kn, step, row, kn.tiles.mr)


def _emit_tail_row_blocks(b: MlirBuilder, kn: _Kernel, step: _Step, m0: str, nfull: str, tail: str) -> None:
    """The tail of tail < mr rows as blocks of the powers of two in its binary expansion, largest first."""
    full = b.let("full", f"arith.muli {nfull}, {b.index(kn.tiles.mr)} : index")
    base = b.let("tbase", f"arith.addi {m0}, {full} : index")
    for size in kn.tiles.tail_rows:
        bit = b.let("bit", f"arith.andi {tail}, {b.index(size)} : index")
        has = b.let("has", f"arith.cmpi ne, {bit}, {b.index(0)} : index")
        with b.if_else(has):
            # Rows before this block: the larger blocks, i.e. the bits of tail above `size`.
            done = b.let("done", f"arith.andi {tail}, {b.index(-2 * size)} : index")
            row = b.let("row", f"arith.addi {base}, {done} : index")
            _emit_row_block(b, kn, step, row, size)


def _chains(kn: _Kernel, rows: int) -> int:
    """Accumulator sets for a block of `rows`: enough independent FMA chains, a divisor of ku."""
    per_set = rows * kn.tiles.nr // VECTOR
    sets = 1
    while sets * per_set < kn.tiles.min_chains and sets < kn.tiles.ku and kn.tiles.ku % (sets * 2) == 0:
        sets *= 2
    return sets


def _emit_row_block(b: MlirBuilder, kn: _Kernel, step: _Step, row: str, rows: int) -> None:
    """y[row:row+rows, panel columns] (op)= the micro-kernel over the K block, then the epilogue."""
    row_ids = [row] + [b.let("r", f"arith.addi {row}, {b.index(i)} : index") for i in range(1, rows)]
    sets = _chains(kn, rows)
    accs = _emit_k_loop(b, kn, step, row_ids, sets)
    accs = _sum_sets(b, accs, sets)
    accs = _emit_k_remainder(b, kn, step, row_ids, accs)
    _emit_epilogue(b, kn, step, row_ids, accs)


def _emit_k_loop(b: MlirBuilder, kn: _Kernel, step: _Step, row_ids: list[str], sets: int) -> list[str]:
    """The unrolled micro-kernel loop over [kb, kmain): `sets` accumulator sets of rows x nr/16 vectors,
    unrolled step u feeding set u % sets. Returns the accumulators, set-major."""
    per_set = len(row_ids) * kn.tiles.nr // VECTOR
    zeros = [(b.const("0.0", VEC), VEC)] * (sets * per_set)
    with b.loop(step.kb, step.kmain, b.index(kn.tiles.ku), zeros) as loop:
        k, current = loop.iv, list(loop.args)
        for u in range(kn.tiles.ku):
            ku = k if u == 0 else b.let("k", f"arith.addi {k}, {b.index(u)} : index")
            base = (u % sets) * per_set
            current[base : base + per_set] = _emit_k_step(b, kn, step, row_ids, ku, current[base : base + per_set])
        loop.yield_(*current)
    return loop.results


def _emit_k_step(b: MlirBuilder, kn: _Kernel, step: _Step, row_ids: list[str], k: str, accs: list[str]) -> list[str]:
    """One k step: nr/16 weight vectors, one broadcast per row, rows x nr/16 FMAs (row-major accs)."""
    columns = kn.tiles.nr // VECTOR
    weights = [_emit_weight_load(b, kn, step.panel, k, j) for j in range(columns)]
    out = []
    for i, row in enumerate(row_ids):
        scalar = b.let("xs", f"memref.load %x[{row}, {k}] : {kn.x_type}")
        if kn.spec.x_dtype != "f32":
            scalar = b.let("xf", f"arith.extf {scalar} : {kn.spec.x_dtype} to f32")
        splat = b.let("xb", f"vector.broadcast {scalar} : f32 to {VEC}")
        for j in range(columns):
            out.append(b.let("f", f"vector.fma {splat}, {weights[j]}, {accs[i * columns + j]} : {VEC}"))
    return out


def _emit_weight_load(b: MlirBuilder, kn: _Kernel, panel: str, k: str, j: int) -> str:
    dtype = kn.spec.weight_dtype
    loaded = b.let("wv", f"vector.load %w[{panel}, {k}, {b.index(j * VECTOR)}] : {kn.w_type}, vector<{VECTOR}x{dtype}>")
    if dtype == "f32":
        return loaded
    return b.let("wf", f"arith.extf {loaded} : vector<{VECTOR}x{dtype}> to {VEC}")


def _sum_sets(b: MlirBuilder, accs: list[str], sets: int) -> list[str]:
    """Pairwise sum of the accumulator sets into one."""
    groups = [accs[s * len(accs) // sets : (s + 1) * len(accs) // sets] for s in range(sets)]
    while len(groups) > 1:
        half = len(groups) // 2
        groups = [
            [b.let("s", f"arith.addf {x}, {y} : {VEC}") for x, y in zip(groups[g], groups[g + half], strict=True)]
            for g in range(half)
        ]
    return groups[0]


def _emit_k_remainder(b: MlirBuilder, kn: _Kernel, step: _Step, row_ids: list[str], accs: list[str]) -> list[str]:
    """The (klen mod ku) last k steps of the block, one at a time."""
    if kn.spec.k % kn.tiles.ku == 0 and kn.tiles.kc % kn.tiles.ku == 0:
        return accs  # every K block is a multiple of ku long
    with b.loop(step.kmain, step.kend, b.index(1), [(acc, VEC) for acc in accs]) as loop:
        loop.yield_(*_emit_k_step(b, kn, step, row_ids, loop.iv, loop.args))
    return loop.results


def _columns(b: MlirBuilder, kn: _Kernel, step: _Step) -> list[str]:
    return [step.col0] + [
        b.let("n", f"arith.addi {step.col0}, {b.index(j * VECTOR)} : index") for j in range(1, kn.tiles.nr // VECTOR)
    ]


def _in_bounds(kn: _Kernel) -> str:
    return "true" if not kn.columns_masked else "false"


def _emit_epilogue(b: MlirBuilder, kn: _Kernel, step: _Step, row_ids: list[str], accs: list[str]) -> None:
    """y tile = prev + row_scale * acc (prev: 0 or y), then on the last K block + bias and relu2; store."""
    cols = _columns(b, kn, step)
    tiles = [(row, col) for row in row_ids for col in cols]
    prev = _emit_previous(b, kn, step, tiles)
    values = _emit_scaled_sum(b, kn, row_ids, len(cols), accs, prev)
    values = _emit_finish(b, kn, step, cols, len(row_ids), values)
    if kn.spec.y_dtype == "bf16":
        _emit_bf16_stores(b, kn, step, tiles, values)
        return
    for (row, col), value in zip(tiles, values, strict=True):
        b.emit(
            f"vector.transfer_write {value}, %y[{row}, {col}] {{in_bounds = [{_in_bounds(kn)}]}} : {VEC}, {kn.y_type}"
        )


def _emit_bf16_stores(
    b: MlirBuilder, kn: _Kernel, step: _Step, tiles: list[tuple[str, str]], values: list[str]
) -> None:
    """Round the f32 tile to bf16 and store it. No masked bf16 stores: LLVM lowers those through an f32
    -> bf16 conversion (a __truncsfbf2 libcall, missing from the link, on x86 without AVX512-BF16), so
    where N is not a multiple of nr the last panel stores its N % nr columns with statically sized stores."""
    halves = [f32_to_bf16_bits(b, value, VEC, quiet_nan=True) for value in values]
    if not kn.columns_masked:
        _store_bf16_tiles(b, kn, tiles, halves, kn.tiles.nr)
        return
    last = panel_count(kn.spec, kn.tiles) - 1
    inner = b.let("inner", f"arith.cmpi ne, {step.panel}, {b.index(last)} : index")
    with b.if_else(inner) as otherwise:
        _store_bf16_tiles(b, kn, tiles, halves, kn.tiles.nr)
        otherwise()
        _store_bf16_tiles(b, kn, tiles, halves, kn.spec.n - last * kn.tiles.nr)


def _store_bf16_tiles(b: MlirBuilder, kn: _Kernel, tiles: list[tuple[str, str]], halves: list[str], width: int) -> None:
    """Store the first `width` columns of each row of the tile (vector<16xi16> bfloat16 bits per 16)."""
    columns = kn.tiles.nr // VECTOR
    for index, ((row, col), half) in enumerate(zip(tiles, halves, strict=True)):
        count = min(VECTOR, width - (index % columns) * VECTOR)
        if count <= 0:
            continue
        if count < VECTOR:
            half = b.let(
                "yp",
                f"vector.extract_strided_slice {half} {{offsets = [0], sizes = [{count}], strides = [1]}} "
                f": vector<{VECTOR}xi16> to vector<{count}xi16>",
            )
        value = b.let("yw", f"arith.bitcast {half} : vector<{count}xi16> to vector<{count}xbf16>")
        b.emit(f"vector.store {value}, %y[{row}, {col}] : {kn.y_type}, vector<{count}xbf16>")


def _read_y(b: MlirBuilder, kn: _Kernel, row: str, col: str) -> str:
    assert kn.spec.y_dtype == "f32", "a bf16 y is never read back (no 'accumulate', a single K block)"
    return b.let(
        "yv",
        f"vector.transfer_read %y[{row}, {col}], {b.const('0.0', 'f32')} {{in_bounds = [{_in_bounds(kn)}]}} : {kn.y_type}, {VEC}",
    )


def _emit_previous(b: MlirBuilder, kn: _Kernel, step: _Step, tiles: list[tuple[str, str]]) -> list[str] | None:
    """The y tile the block's sum adds to: y itself, or nothing (None) / zero in a first K block."""
    if step.load_prev is None:
        return [_read_y(b, kn, row, col) for row, col in tiles]
    if kn.spec.k <= kn.tiles.kc:
        return None  # a single K block that starts from zero
    return b.if_yield(
        step.load_prev,
        [VEC] * len(tiles),
        lambda: [_read_y(b, kn, row, col) for row, col in tiles],
        lambda: [b.const("0.0", VEC)] * len(tiles),
    )


def _emit_scaled_sum(
    b: MlirBuilder, kn: _Kernel, row_ids: list[str], columns: int, accs: list[str], prev: list[str] | None
) -> list[str]:
    out = []
    for i, row in enumerate(row_ids):
        scale = None
        if kn.spec.row_scale:
            scalar = b.let("rs", f"memref.load %row_scale[{row}] : memref<?xf32>")
            scale = b.let("rsb", f"vector.broadcast {scalar} : f32 to {VEC}")
        for j in range(columns):
            acc = accs[i * columns + j]
            base = None if prev is None else prev[i * columns + j]
            if scale is not None and base is not None:
                out.append(b.let("v", f"vector.fma {acc}, {scale}, {base} : {VEC}"))
            elif scale is not None:
                out.append(b.let("v", f"arith.mulf {acc}, {scale} : {VEC}"))
            elif base is not None:
                out.append(b.let("v", f"arith.addf {acc}, {base} : {VEC}"))
            else:
                out.append(acc)
    return out


def _emit_finish(b: MlirBuilder, kn: _Kernel, step: _Step, cols: list[str], rows: int, values: list[str]) -> list[str]:
    """Bias and relu2, applied once the sum is complete (under `scf.if last` when K is blocked)."""
    if not kn.spec.bias and kn.spec.epilogue != "relu2":
        return values
    if step.last is None:
        return _finish_values(b, kn, cols, rows, values)
    return b.if_yield(step.last, [VEC] * len(values), lambda: _finish_values(b, kn, cols, rows, values), lambda: values)


def _finish_values(b: MlirBuilder, kn: _Kernel, cols: list[str], rows: int, values: list[str]) -> list[str]:
    biases: list[str] = []
    if kn.spec.bias:
        biases = [
            b.let(
                "bv",
                f"vector.transfer_read %bias[{col}], {b.const('0.0', 'f32')} {{in_bounds = [{_in_bounds(kn)}]}} "
                f": memref<{kn.spec.n}xf32>, {VEC}",
            )
            for col in cols
        ]
    out = []
    for index, value in enumerate(values):
        if biases:
            value = b.let("vb", f"arith.addf {value}, {biases[index % len(cols)]} : {VEC}")
        if kn.spec.epilogue == "relu2":
            positive = b.let("pos", f"arith.maximumf {value}, {b.const('0.0', VEC)} : {VEC}")
            value = b.let("sq", f"arith.mulf {positive}, {positive} : {VEC}")
        out.append(value)
    return out

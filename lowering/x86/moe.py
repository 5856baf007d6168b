"""Expert-major MoE kernels for x86: each routed expert's weights are read once per call for all the tokens
routed to it (a token-by-token loop would stream every routed expert's weights per token).

Notation: E experts, K = top_k, F = ffn, L = latent, T the (dynamic) token count; Lp / Fp are L / F rounded up
to a multiple of 16. A routed slot (t, j) is token t's j-th choice, ids[t, j], with the flat number s = t*K + j.

Kernel ABI (every kernel returns nothing; the last two arguments are the parallel range):

    moe_expert_outputs(%x: memref<?xLxX>, %ids: memref<?xKxi64>, %up: memref<ExFxLxf32>,
                       %down: memref<ExLxFxf32>, %contrib: memref<?x(K*L)xf32>, %begin: index, %end: index)
        X = dims.x_dtype (f32, or bf16: numpy uint16 bfloat16 bits, widened exactly). For every expert e in
        [begin, end) and every slot (t, j) with ids[t, j] == e:
            contrib[t, j*L:(j+1)*L] = down[e] @ relu(up[e] @ x[t])^2        (float32 accumulation)
        No other element of contrib is read or written: each slot belongs to exactly one expert, so two threads
        on disjoint expert ranges never race. Ids outside [begin, end) (other experts, or invalid) are skipped.

The combine that follows (out (+)= sum_j weights[t, j] * contrib[t, j], j ascending) is written once in
kernels/moe.py. Together they compute the MoE layer's routed part (out (+)= sum_j weights[t, j] * down[e] @ relu(up[e] @ x[t])^2).

moe_expert_outputs, per call (0 <= begin <= end <= E):
  1. Counting sort of the slots routed to [begin, end): counts per expert, segment starts (prefix sums, and the
     largest count), then one pass writing each slot number s into its expert's segment of a slot list. Experts
     with no tokens cost nothing after this.
  2. Per expert e with n slots, n rounded up to n' (a multiple of ROWS):
       gather  xg[r] = x[token of slot r] in f32 (rows [n, n') and columns [L, Lp) zero)
       up      hid[r, f] = sum_l xg[r, l] * up[e, f, l];  then hid = relu(hid)^2
       down    yo[r, c] = sum_f hid[r, f] * down[e, c, f]
       scatter contrib[t, j*L:(j+1)*L] = yo[r, :L] for the slot (t, j) of each row r < n
     Each product is dot products along the contiguous dimension (L, resp. F), cut into blocks of KC columns:
         for each K block:                     (later blocks add to the partial sums in hid / yo)
           for each block of OUTS outputs:     OUTS weight rows x KC stay in L1 while
             for each block of ROWS rows:      the rows' KC columns (n' x KC, L2) stream past them
               ROWS x OUTS vector<16xf32> accumulators (ROWS + OUTS loads, ROWS * OUTS FMAs per 16 columns),
               folded into one vector of their 16 lane sums, stored as ROWS vector<OUTSxf32>
     so every weight element is read from memory once per call; the next output block's weight rows are
     prefetched while the current one is reused. A weight row's partial last 16-column chunk is a masked
     load (the scratch rows are zero-padded past L / F, so lanes past the end add 0). Output indices past the
     last (the partial last output block) read the last weight row again and land in the scratch padding
     (columns [F, Fp) of hid: multiplied by masked-off weights; of yo: never copied out).
  The slot list and the scratch rows (xg, hid, yo: the largest n' of the range) are allocated once per call
  and freed before it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tessera.lowering.mlir_text import MlirBuilder, bf16_to_f32
from tessera.lowering.x86.fold import fold16

VEC = 16  # f32 lanes of one 512-bit vector
VF32 = f"vector<{VEC}xf32>"
VMASK = f"vector<{VEC}xi1>"
X_DTYPES = ("f32", "bf16")
ROWS = 4  # token rows of one register tile
OUTS = 4  # outputs (up rows / down rows) of one register tile: ROWS * OUTS = 16 accumulators, folded into one
# K block of the expert products: 4 weight rows of 384 (6 KiB) stay in L1, n' rows of 384 in L2. Measured on
# znver5 (E=16, K=6, L=2688, F=1856; 2 threads): 384 beat 256, 448, 512, 768, 1024 and L (no blocking) by 2-48%.
KC = 384
V4 = f"vector<{OUTS}xf32>"
KINDS = ("moe_expert_outputs",)


@dataclass(frozen=True)
class ExpertDims:
    num_experts: int
    top_k: int
    ffn: int
    latent: int
    x_dtype: str = "f32"  # "f32" or "bf16" (x passed as bfloat16 bits)

    def __post_init__(self) -> None:
        if min(self.num_experts, self.top_k, self.ffn, self.latent) < 1:
            raise ValueError(f"MoE expert dimensions must be positive: {self}")
        if self.x_dtype not in X_DTYPES:
            raise ValueError(f"unknown MoE x dtype {self.x_dtype!r} (expected f32 or bf16)")

    @property
    def padded_latent(self) -> int:
        return _padded(self.latent)

    @property
    def padded_ffn(self) -> int:
        return _padded(self.ffn)


def _padded(size: int) -> int:
    return -(-size // VEC) * VEC


@dataclass(frozen=True)
class _Types:
    x: str
    ids: str
    up: str
    down: str
    contrib: str
    weights: str
    out: str
    xg: str
    hid: str

    @staticmethod
    def of(d: ExpertDims) -> _Types:
        e, k, f, lat = d.num_experts, d.top_k, d.ffn, d.latent
        return _Types(
            x=f"memref<?x{lat}x{d.x_dtype}>",
            ids=f"memref<?x{k}xi64>",
            up=f"memref<{e}x{f}x{lat}xf32>",
            down=f"memref<{e}x{lat}x{f}xf32>",
            contrib=f"memref<?x{k * lat}xf32>",
            weights=f"memref<?x{k}xf32>",
            out=f"memref<?x{lat}xf32>",
            xg=f"memref<?x{d.padded_latent}xf32>",
            hid=f"memref<?x{d.padded_ffn}xf32>",
        )


def _mask(b: MlirBuilder, valid: int) -> str:
    """The constant lane mask of a partial chunk whose first `valid` lanes are in bounds."""
    lanes = ", ".join("true" if lane < valid else "false" for lane in range(VEC))
    return b.const(f"[{lanes}]", VMASK)


def _fma(b: MlirBuilder, x: str, y: str, acc: str, type_: str = VF32) -> str:
    """x*y + acc; `contract` lets LLVM fuse it into one FMA where the CPU has FMA (baseline: mul + add)."""
    product = b.let("m", f"arith.mulf {x}, {y} fastmath<contract> : {type_}")
    return b.let("f", f"arith.addf {product}, {acc} fastmath<contract> : {type_}")


def _min(b: MlirBuilder, x: str, y: str) -> str:
    return b.let("n", f"arith.minui {x}, {y} : index")


def _add(b: MlirBuilder, x: str, y: str) -> str:
    return b.let("n", f"arith.addi {x}, {y} : index")


# --- moe_expert_outputs -------------------------------------------------------------------------------------


def emit_moe_expert_outputs(name: str, d: ExpertDims) -> str:
    """The moe_expert_outputs kernel (ABI and algorithm in the module docstring)."""
    ty = _Types.of(d)
    b = MlirBuilder()
    c0, c1 = b.index(0), b.index(1)
    counts, list_, largest = _sort_slots(b, d, ty)
    rows = _round_up(b, largest)
    xg, hid, yo = (
        b.let(hint, f"memref.alloc({rows}) {{alignment = 64 : i64}} : {type_}")
        for hint, type_ in (("xg", ty.xg), ("hid", ty.hid), ("yo", ty.xg))
    )
    if d.ffn % VEC:  # hid columns the up phase never writes are read (times masked-off weights): zero them
        pad = b.index(d.padded_ffn - VEC)
        with b.loop(c0, rows, c1) as row:
            b.emit(f"vector.store {b.f32(0.0, VF32)}, {hid}[{row.iv}, {pad}] : {ty.hid}, {VF32}")
    with b.loop("%begin", "%end", c1) as expert:
        e = expert.iv
        n = b.let("cnt", f"memref.load {counts}[{e}] : memref<{d.num_experts}xindex>")
        stop = b.let("stop", f"memref.load %starts[{e}] : memref<{d.num_experts}xindex>")
        first = b.let("first", f"arith.subi {stop}, {n} : index")
        n_pad = _round_up(b, n)
        _gather(b, d, ty, list_, first, n, n_pad, xg)
        _product(b, _Operand(xg, ty.xg), _Operand("%up", ty.up), e, n_pad, d.ffn, d.latent, _Operand(hid, ty.hid))
        with b.loop(c0, n, c1) as row:  # hid = relu(hid)^2

            def relu2(column: str, mask: str | None, row: str = row.iv) -> None:
                value = b.let("h", f"vector.load {hid}[{row}, {column}] : {ty.hid}, {VF32}")
                positive = b.let("h", f"arith.maximumf {value}, {b.f32(0.0, VF32)} : {VF32}")
                square = b.let("h", f"arith.mulf {positive}, {positive} : {VF32}")
                b.emit(f"vector.store {square}, {hid}[{row}, {column}] : {ty.hid}, {VF32}")

            _chunks(b, d.padded_ffn, relu2)
        _product(b, _Operand(hid, ty.hid), _Operand("%down", ty.down), e, n_pad, d.latent, d.ffn, _Operand(yo, ty.xg))
        _scatter(b, d, ty, list_, first, n, yo)
    for memref, type_ in ((list_, "memref<?xindex>"), (xg, ty.xg), (hid, ty.hid), (yo, ty.xg)):
        b.emit(f"memref.dealloc {memref} : {type_}")
    params = (
        f"%x: {ty.x}, %ids: {ty.ids}, %up: {ty.up}, %down: {ty.down}, %contrib: {ty.contrib}, "
        "%begin: index, %end: index"
    )
    return b.function(name, params)


def _round_up(b: MlirBuilder, n: str) -> str:
    """n rounded up to a multiple of ROWS."""
    bumped = _add(b, n, b.index(ROWS - 1))
    return b.let("n", f"arith.andi {bumped}, {b.index(-ROWS)} : index")


def _chunks(b: MlirBuilder, length: int, body: Callable[[str, str | None], None]) -> None:
    """body(column, mask) for the 16-column chunks of [0, length): an scf.for over the whole chunks, then the
    partial last chunk with its lane mask (None for whole chunks)."""
    full = length // VEC * VEC
    if full:
        with b.loop(b.index(0), b.index(full), b.index(VEC)) as loop:
            body(loop.iv, None)
    if length > full:
        body(b.index(full), _mask(b, length - full))


def _load(b: MlirBuilder, memref: str, type_: str, at: str, mask: str | None, element: str = "f32") -> str:
    """A vector<16xelement> at memref[at]; masked-off lanes read nothing and give 0."""
    vector = f"vector<{VEC}x{element}>"
    if mask is None:
        return b.let("v", f"vector.load {memref}[{at}] : {type_}, {vector}")
    zero = b.const("0.0", vector)
    return b.let("v", f"vector.maskedload {memref}[{at}], {mask}, {zero} : {type_}, {VMASK}, {vector} into {vector}")


def _for_routed_slots(b: MlirBuilder, d: ExpertDims, ty: _Types, body: Callable[[str, str], None]) -> None:
    """Calls body(expert, slot number) inside `scf.if` for every slot (t, j) whose expert is in [begin, end)."""
    tokens = b.let("T", f"memref.dim %ids, {b.index(0)} : {ty.ids}")
    with b.loop(b.index(0), tokens, b.index(1)) as token:
        base = b.let("s", f"arith.muli {token.iv}, {b.index(d.top_k)} : index")
        for j in range(d.top_k):
            raw = b.let("id", f"memref.load %ids[{token.iv}, {b.index(j)}] : {ty.ids}")
            expert = b.let("id", f"arith.index_cast {raw} : i64 to index")
            low = b.let("in", f"arith.cmpi uge, {expert}, %begin : index")
            high = b.let("in", f"arith.cmpi ult, {expert}, %end : index")
            inside = b.let("in", f"arith.andi {low}, {high} : i1")
            with b.if_else(inside):
                body(expert, base if j == 0 else _add(b, base, b.index(j)))


def _sort_slots(b: MlirBuilder, d: ExpertDims, ty: _Types) -> tuple[str, str, str]:
    """Counting sort of the routed slots by expert. Returns (counts, list of slot numbers, the largest count);
    %starts[e] ends as the end of expert e's segment of the list."""
    counts_t = f"memref<{d.num_experts}xindex>"
    c0, c1 = b.index(0), b.index(1)
    counts = b.let("counts", f"memref.alloca() : {counts_t}")
    b.emit(f"%starts = memref.alloca() : {counts_t}")
    with b.loop("%begin", "%end", c1) as expert:
        b.emit(f"memref.store {c0}, {counts}[{expert.iv}] : {counts_t}")

    def count(expert: str, slot: str) -> None:
        old = b.let("c", f"memref.load {counts}[{expert}] : {counts_t}")
        b.emit(f"memref.store {_add(b, old, c1)}, {counts}[{expert}] : {counts_t}")

    _for_routed_slots(b, d, ty, count)
    with b.loop("%begin", "%end", c1, [(c0, "index"), (c0, "index")]) as prefix:
        total, largest = prefix.args
        n = b.let("c", f"memref.load {counts}[{prefix.iv}] : {counts_t}")
        b.emit(f"memref.store {total}, %starts[{prefix.iv}] : {counts_t}")
        prefix.yield_(_add(b, total, n), b.let("c", f"arith.maxui {largest}, {n} : index"))
    total, largest = prefix.results
    list_ = b.let("slots", f"memref.alloc({total}) : memref<?xindex>")

    def place(expert: str, slot: str) -> None:
        position = b.let("p", f"memref.load %starts[{expert}] : {counts_t}")
        b.emit(f"memref.store {slot}, {list_}[{position}] : memref<?xindex>")
        b.emit(f"memref.store {_add(b, position, c1)}, %starts[{expert}] : {counts_t}")

    _for_routed_slots(b, d, ty, place)
    return counts, list_, largest


def _token_of(b: MlirBuilder, d: ExpertDims, list_: str, first: str, row: str) -> tuple[str, str]:
    """(token, first contrib column) of the slot at `row` of the expert's segment."""
    slot = b.let("s", f"memref.load {list_}[{_add(b, first, row)}] : memref<?xindex>")
    k = b.index(d.top_k)
    token = b.let("t", f"arith.divui {slot}, {k} : index")
    choice = b.let("j", f"arith.remui {slot}, {k} : index")
    return token, b.let("col", f"arith.muli {choice}, {b.index(d.latent)} : index")


def _gather(b: MlirBuilder, d: ExpertDims, ty: _Types, list_: str, first: str, n: str, n_pad: str, xg: str) -> None:
    """xg[r, :] = x[token of row r] widened to f32 for r < n; columns [L, Lp) and rows [n, n_pad) zero."""
    c0, c1 = b.index(0), b.index(1)
    with b.loop(c0, n, c1) as row:
        token, _ = _token_of(b, d, list_, first, row.iv)

        def copy(column: str, mask: str | None) -> None:
            value = _load(b, "%x", ty.x, f"{token}, {column}", mask, d.x_dtype)
            if d.x_dtype == "bf16":
                value = bf16_to_f32(b, value, f"vector<{VEC}xbf16>")
            b.emit(f"vector.store {value}, {xg}[{row.iv}, {column}] : {ty.xg}, {VF32}")

        _chunks(b, d.latent, copy)
    with b.loop(n, n_pad, c1) as row:

        def clear(column: str, mask: str | None) -> None:
            b.emit(f"vector.store {b.f32(0.0, VF32)}, {xg}[{row.iv}, {column}] : {ty.xg}, {VF32}")

        _chunks(b, d.padded_latent, clear)


def _scatter(b: MlirBuilder, d: ExpertDims, ty: _Types, list_: str, first: str, n: str, yo: str) -> None:
    """contrib[t, j*L:(j+1)*L] = yo[r, :L] for the slot (t, j) of each row r < n."""
    with b.loop(b.index(0), n, b.index(1)) as row:
        token, base = _token_of(b, d, list_, first, row.iv)

        def copy(column: str, mask: str | None) -> None:
            value = b.let("v", f"vector.load {yo}[{row.iv}, {column}] : {ty.xg}, {VF32}")
            at = f"{token}, {_add(b, base, column)}"
            if mask is None:
                b.emit(f"vector.store {value}, %contrib[{at}] : {ty.contrib}, {VF32}")
            else:
                b.emit(f"vector.maskedstore %contrib[{at}], {mask}, {value} : {ty.contrib}, {VMASK}, {VF32}")

        _chunks(b, d.latent, copy)


@dataclass(frozen=True)
class _Operand:
    memref: str
    type_: str


def _product(
    b: MlirBuilder, acts: _Operand, weight: _Operand, expert: str, rows: str, outs: int, length: int, out: _Operand
) -> None:
    """out[r, o] = sum_{i < length} acts[r, i] * weight[expert, o, i] for r < rows (a multiple of ROWS) and
    o < outs rounded up to OUTS (o >= outs reads weight row outs - 1: a finite value in out's padding).

    acts rows are zero-padded past `length`. The i dimension is cut into blocks of KC (see the module
    docstring); each register tile is folded into its 16 sums and stored (first block) or added to out."""
    blocks, tail = divmod(length, KC)

    def block(start: str, size: int, first: str | bool) -> None:
        with b.loop(b.index(0), b.index(-(-outs // OUTS) * OUTS), b.index(OUTS)) as out_block:
            weight_rows = _clamped(b, out_block.iv, OUTS, b.index(outs - 1))
            following = _add(b, out_block.iv, b.index(OUTS))
            next_rows = [_min(b, _add(b, following, b.index(i)), b.index(outs - 1)) for i in range(OUTS)]
            with b.loop(b.index(0), rows, b.index(ROWS)) as row_block:
                act_rows = [row_block.iv] + [_add(b, row_block.iv, b.index(r)) for r in range(1, ROWS)]
                accs = _dot_tile(b, acts, weight, expert, act_rows, weight_rows, start, size, length, next_rows)
                sums = fold16(b, accs)
                for r, row in enumerate(act_rows):
                    part = b.let(
                        "p",
                        f"vector.extract_strided_slice {sums} {{offsets = [{r * OUTS}], sizes = [{OUTS}], "
                        f"strides = [1]}} : {VF32} to {V4}",
                    )
                    at = f"{out.memref}[{row}, {out_block.iv}]"
                    if first is not True:
                        old = b.let("o", f"vector.load {at} : {out.type_}, {V4}")
                        if first is not False:
                            old = b.let("o", f"arith.select {first}, {b.f32(0.0, V4)}, {old} : {V4}")
                        part = b.let("p", f"arith.addf {part}, {old} : {V4}")
                    b.emit(f"vector.store {part}, {at} : {out.type_}, {V4}")

    if blocks:
        with b.loop(b.index(0), b.index(blocks * KC), b.index(KC)) as k_block:
            first = True if blocks == 1 else b.let("first", f"arith.cmpi eq, {k_block.iv}, {b.index(0)} : index")
            block(k_block.iv, KC, first)
    if tail:
        block(b.index(blocks * KC), tail, blocks == 0)


def _dot_tile(
    b: MlirBuilder, acts: _Operand, weight: _Operand, expert: str, rows: list[str], outs: list[str], start: str,
    size: int, length: int, prefetch: list[str],
) -> list[str]:  # fmt: skip
    """acc[r * OUTS + o] = the 16 lane partial sums of acts[rows[r], i] * weight[expert, outs[o], i] over
    i in [start, start + size); a partial last chunk (only where start + size = length) is a masked load."""
    full = size // VEC * VEC
    zeros = [(b.f32(0.0, VF32), VF32)] * (len(rows) * len(outs))

    def step(column: str, accs: list[str], mask: str | None) -> list[str]:
        xs = [b.let("a", f"vector.load {acts.memref}[{row}, {column}] : {acts.type_}, {VF32}") for row in rows]
        ws = [_load(b, weight.memref, weight.type_, f"{expert}, {o}, {column}", mask) for o in outs]
        if mask is None:  # the next output block's weight rows, for when this block is done
            for o in prefetch:
                at = f"{weight.memref}[{expert}, {o}, {column}]"
                b.emit(f"memref.prefetch {at}, read, locality<3>, data : {weight.type_}")
        return [_fma(b, x, w, accs[r * len(outs) + o]) for r, x in enumerate(xs) for o, w in enumerate(ws)]

    accs = [value for value, _ in zeros]
    if full:
        with b.loop(start, _add(b, start, b.index(full)), b.index(VEC), zeros) as loop:
            loop.yield_(*step(loop.iv, loop.args, None))
        accs = loop.results
    if size > full:
        accs = step(_add(b, start, b.index(full)), accs, _mask(b, size - full))
    return accs


def _clamped(b: MlirBuilder, start: str, size: int, last: str) -> list[str]:
    """start, start+1, ... (size values), each clamped to `last` (start itself is never past it)."""
    return [start] + [_min(b, _add(b, start, b.index(i)), last) for i in range(1, size)]


def footprint_bytes(kind: str, d: ExpertDims) -> int:
    """Fast-memory bytes one call keeps live (per thread).

    moe_expert_outputs: one K block of the products' register tile: OUTS weight rows (held in L1 while the row
    blocks stream past), ROWS scratch rows and the ROWS x OUTS accumulators, plus the per-expert counts and
    segment ends. The K block of an expert's scratch rows (n' x KC floats, n' dynamic) is streamed from L2 once
    per output block and not counted.
    """
    if kind == "moe_expert_outputs":
        block = min(KC, max(d.padded_latent, d.padded_ffn)) * 4
        return (OUTS + ROWS) * block + ROWS * OUTS * VEC * 4 + 2 * d.num_experts * 8
    raise ValueError(f"unknown MoE kernel kind {kind!r} (expected one of {', '.join(KINDS)})")

"""SIMT kernels of the Mamba-2 mixer around the scan, for every GPU target: the causal conv + SiLU, the decode
step of the SSD recurrence (the gated group RMSNorm is kernels/mamba.py) (tiles: tiling/gpu_rows.py; registered
through lowering/gpu/simt_rows.EMITTERS), and on Hopper the prefill scan as that same recurrence
(ssd_scan_simt below). The chunked prefill scan on MFMA is lowering/rocdl/ssd.py. Waves are the arch's
(64 lanes on CDNA, warps of 32 on Hopper: "64" and "4 waves" below read W and 256 / W).

Notation as lowering/x86/mamba.py: H heads of P channels, G groups of state size N (head h reads group
h // (H/G)), I = H P, conv channels C = I + 2 G N, K conv taps, in_proj's row zxbcdt [T, W] with
W = 2 I + 2 G N + H: z = columns [0, I), xBC = [I, I + C) (x, then B = [I, I + G N), then C), dt_raw =
[I + C, I + C + H). Buffers are row-major, indexed by i32 element offsets. Semantics are the x86 kernels'
(same float operations in the same order where x86 defines one; sums reassociated; dt in f32 where x86
uses f64 — no f64 exp/log on the GPU without a device library).

    conv_silu(zxbcdt f32 [T, W], conv_weight f32 [C, K], [conv_bias f32 [C]], conv_state f32 [C, K-1],
              xbc f32 [T, C])                            Grid x = (C, 64): thread c of the grid = channel c
        The thread keeps its K taps and the K-1 carried inputs (conv_state[c, :], oldest first) in
        registers and walks the call's tokens in order: window = [carried ; zxbcdt[t, I + c]],
        xbc[t, c] = silu(bias[c] + sum_k w[c, k] window[k]) (k ascending, as x86's FMA chain; 0 without a
        bias), then carried := window[1:]. After the last token conv_state[c, :] := carried, so it holds the
        last K-1 inputs of [old state ; xBC] for any T, including T < K-1 (some old entries remain) and T = 0.
        Loads and stores of a token row are coalesced (consecutive lanes, consecutive channels).

    ssd_step(zxbcdt, xbc, dt_bias f32 [H], A_log f32 [H], D f32 [H], ssm_state (f32 | bf16) [H, P, N],
             y f32 [T, I])                               Grid x = (H, 1): a workgroup of 4 waves per head h
        For each token t in order (decode has T = 1; x86 does the same for any T):
        dt = softplus(zxbcdt[t, I + C + h] + dt_bias[h]) (torch's threshold 20, log1p kept exact for small
        exp; no time_step_min clamp: HF's decode step has none, as x86's), decay = exp(dt A),
        A = -exp(A_log[h]). Lane l of wave w owns state columns n = l + 64 r (B[n], C[n] of the head's
        group in registers) and rows p = w, w + 4, ...: state[h, p, n] = (dt x[p]) B[n] + decay state[h, p, n]
        (a bf16 state is stored rounded to nearest even and the rounded value is the one y uses), then
        y[t, h P + p] = D[h] x[p] + sum_n state[h, p, n] C[n] (the wave's shuffle butterfly; lane 0 stores).
        A state element is read and written by one thread only, so tokens need no barrier.

    ssd_scan_simt(the same operands; dims time_step_min)  Grid x = (H, 1), 256 threads: Hopper's prefill scan
        The decode step's recurrence over the call's tokens with dt = max(softplus(...), time_step_min) (the
        chunked scan's clamp), the state held as f32 in a shared tile [P, N] for the call: each thread loads
        the elements it owns, updates them per token, and stores them once at the end (bf16 rounded once,
        as the chunked scans do). The same sums as the chunked scan in another order.

silu(x) = x / (exp(-x) + 1). math.exp / log / sqrt / rsqrt are AMDGPU instruction sequences (v_exp_f32,
v_log_f32 with range reduction; rsqrt as a correctly rounded sqrt and a division), no library calls; on
NVVM the builder writes them out (lowering/nvvm/math.py).
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.lowering.gpu.simt import simt_builder
from tessera.lowering.rocdl.kernel_text import GpuKernel, GpuKernelBuilder, Grid, KernelInfo


def _finish(info: KernelInfo, b: GpuKernelBuilder, grid: Grid) -> GpuKernel:
    return GpuKernel(info.name, b.render(), b.threads, grid, sum(tile.bytes for tile in info.lds))


def _i32_mul_add(b: GpuKernelBuilder, x: str, factor: int, addend: str | int) -> str:
    """x * factor + addend on i32 (addend an i32 value or a constant)."""
    product = b.mul(x, b.i32(factor), "i32")
    return b.add(product, b.i32(addend) if isinstance(addend, int) else addend, "i32")


def _select(b: GpuKernelBuilder, cond: str, x: str, y: str, type_: str = "f32") -> str:
    return b.let("s", f"arith.select {cond}, {x}, {y} : {type_}")


def silu(b: GpuKernelBuilder, x: str) -> str:
    negated = b.let("f", f"arith.negf {x} : f32")
    denominator = b.fadd(b.math("exp", negated), b.f32(1.0))
    return b.let("f", f"arith.divf {x}, {denominator} : f32")


def softplus(b: GpuKernelBuilder, x: str) -> str:
    """torch's softplus (threshold 20: x above it), log1p(e) = log(u) * e / (u - 1) with u = 1 + e (e itself
    when u rounds to 1), as x86's _softplus64 but in f32."""
    threshold = b.f32(20.0)
    e = b.math("exp", b.let("f", f"arith.minimumf {x}, {threshold} : f32"))
    one = b.f32(1.0)
    u = b.fadd(e, one)
    ratio = b.let("f", f"arith.divf {e}, {b.let('f', f'arith.subf {u}, {one} : f32')} : f32")
    log1p = b.fmul(b.math("log", u), ratio)
    log1p = _select(b, b.let("p", f"arith.cmpf oeq, {u}, {one} : f32"), e, log1p)
    return _select(b, b.let("p", f"arith.cmpf ogt, {x}, {threshold} : f32"), x, log1p)


class _Mamba:
    """The mixer's dimensions (module docstring notation) from a kernel's dims."""

    def __init__(self, info: KernelInfo) -> None:
        self.heads, self.head_dim = info.dim("num_heads"), info.dim("head_dim")
        self.groups, self.state_size = info.dim("n_groups"), info.dim("state_size")
        self.inner = self.heads * self.head_dim
        self.group_state = self.groups * self.state_size
        self.channels = self.inner + 2 * self.group_state
        self.width = 2 * self.inner + 2 * self.group_state + self.heads


# --- conv_silu ---------------------------------------------------------------------------------------------


def emit_conv_silu(info: KernelInfo) -> GpuKernel:
    m = _Mamba(info)
    taps = info.dim("conv_kernel")
    carried_count = taps - 1
    assert info.dim("channels") == m.channels, f"{info.name}: channels {info.dim('channels')} != {m.channels}"
    has_bias = bool(int(info.dims.get("conv_bias", 0)))
    threads = info.tile("threads")
    operands = ["zxbcdt", "conv_weight", *(["conv_bias"] if has_bias else []), "conv_state", "xbc"]
    b = simt_builder(info, operands)
    channel = b.add(b.mul(b.block_id("x"), b.index(threads)), b.thread_id())
    with b.if_else(b.lt(channel, b.index(m.channels))):
        c = b.to_i32(channel)
        tap_base, state_base = b.mul(c, b.i32(taps), "i32"), b.mul(c, b.i32(carried_count), "i32")
        weights = [b.gload("conv_weight", b.add(tap_base, b.i32(k), "i32")) for k in range(taps)]
        bias = b.gload("conv_bias", c) if has_bias else b.f32(0.0)
        carried = [b.gload("conv_state", b.add(state_base, b.i32(j), "i32")) for j in range(carried_count)]
        input_column = b.add(c, b.i32(m.inner), "i32")
        with b.loop(b.index(0), b.to_index(b.tokens), b.index(1), [(v, "f32") for v in carried]) as row:
            t = b.to_i32(row.iv)
            window = [*row.args, b.gload("zxbcdt", _i32_mul_add(b, t, m.width, input_column))]
            acc = bias
            for weight, value in zip(weights, window, strict=True):
                acc = b.fadd(b.fmul(weight, value), acc)
            b.gstore(silu(b, acc), "xbc", _i32_mul_add(b, t, m.channels, c))
            if carried_count:
                row.yield_(*window[1:])
        for j, value in enumerate(row.results):
            b.gstore(value, "conv_state", b.add(state_base, b.i32(j), "i32"))
    return _finish(info, b, Grid(x=(m.channels, threads)))


# --- ssd_step ----------------------------------------------------------------------------------------------


def emit_ssd_step(info: KernelInfo) -> GpuKernel:
    return _emit_recurrence(info, scan=False)


def emit_ssd_scan_simt(info: KernelInfo) -> GpuKernel:
    """The prefill scan as the recurrence (see the module docstring): the state in shared memory, f32."""
    return _emit_recurrence(info, scan=True)


def _emit_recurrence(info: KernelInfo, scan: bool) -> GpuKernel:
    m = _Mamba(info)
    p_count, n_count = m.head_dim, m.state_size
    state_dtype = str(info.dims.get("state_dtype", "f32"))
    b = simt_builder(info, ["zxbcdt", "xbc", "dt_bias", "A_log", "D", "ssm_state", "y"])
    wave_size = b.wave_size
    assert b.threads % wave_size == 0, f"{info.name}: whole waves of {wave_size} lanes"
    waves = b.threads // wave_size
    tid = b.thread_id()
    lane, wave = b.rem(tid, b.index(wave_size)), b.div(tid, b.index(wave_size))
    head_index = b.block_id("x")
    head = b.to_i32(head_index)
    group = b.div(head, b.i32(m.heads // m.groups), "i32")
    a_log = b.gload("A_log", head)
    a = b.let("f", f"arith.negf {b.math('exp', a_log)} : f32")
    dt_bias, d_head = b.gload("dt_bias", head), b.gload("D", head)
    time_step_min = b.f32(float(info.dims["time_step_min"])) if scan else None
    group_column = b.mul(group, b.i32(n_count), "i32")
    b_column = b.add(group_column, b.i32(m.inner), "i32")
    c_column = b.add(group_column, b.i32(m.inner + m.group_state), "i32")
    x_column = b.mul(head, b.i32(p_count), "i32")
    state_head = b.mul(head, b.i32(p_count * n_count), "i32")
    lane32 = b.to_i32(lane)
    columns: list[tuple[str, str | None]] = []  # (n, in range) per slot of the lane; None: always in range
    for r in range(-(-n_count // wave_size)):
        n = lane32 if r == 0 else b.add(lane32, b.i32(wave_size * r), "i32")
        columns.append((n, None if wave_size * (r + 1) <= n_count else b.lt(n, b.i32(n_count), "i32")))

    def each_owned(body: Callable[[str, str, str], None]) -> None:
        """body(p as index, n as index, global offset) for every state element this thread owns."""
        with b.loop(wave, b.index(p_count), b.index(waves)) as row:
            state_row = _i32_mul_add(b, b.to_i32(row.iv), n_count, state_head)
            for n, inside in columns:

                def one(n: str = n) -> None:
                    body(row.iv, b.to_index(n), b.add(state_row, n, "i32"))

                if inside is None:
                    one()
                else:
                    with b.if_else(inside):
                        one()

    if scan:  # the call's state lives in shared memory as f32 (each element read and written by its owner)
        each_owned(lambda p, n, at: b.lds_store(b.gload("ssm_state", at, state_dtype), "ssm_state", [p, n]))

    with b.loop(b.index(0), b.to_index(b.tokens), b.index(1)) as token:
        t = b.to_i32(token.iv)
        xbc_row = b.mul(t, b.i32(m.channels), "i32")
        raw = b.gload("zxbcdt", _i32_mul_add(b, t, m.width, b.add(head, b.i32(m.inner + m.channels), "i32")))
        dt = softplus(b, b.fadd(raw, dt_bias))
        if time_step_min is not None:
            dt = b.fmax(dt, time_step_min)
        decay = b.math("exp", b.fmul(dt, a))
        b_values, c_values = [], []
        for n, inside in columns:
            at = n if inside is None else _select(b, inside, n, b.i32(0), "i32")
            b_values.append(b.gload("xbc", b.add(xbc_row, b.add(b_column, at, "i32"), "i32")))
            c_values.append(b.gload("xbc", b.add(xbc_row, b.add(c_column, at, "i32"), "i32")))
        with b.loop(wave, b.index(p_count), b.index(waves)) as row:
            p = b.to_i32(row.iv)
            x = b.gload("xbc", b.add(xbc_row, b.add(x_column, p, "i32"), "i32"))
            coef = b.fmul(dt, x)
            state_row = _i32_mul_add(b, p, n_count, state_head)
            partial = b.f32(0.0)
            for (n, inside), b_value, c_value in zip(columns, b_values, c_values, strict=True):

                def update(n: str = n, b_value: str = b_value, c_value: str = c_value) -> list[str]:
                    at = b.add(state_row, n, "i32")
                    where = [row.iv, b.to_index(n)]
                    old = b.lds_load("ssm_state", where) if scan else b.gload("ssm_state", at, state_dtype)
                    new = b.fadd(b.fmul(coef, b_value), b.fmul(decay, old))
                    if scan:
                        b.lds_store(new, "ssm_state", where)
                    else:
                        if state_dtype == "bf16":
                            new = b.widen(b.narrow(new))  # what is stored, exactly (narrowing it again is exact)
                        b.gstore(new, "ssm_state", at, state_dtype)
                    return [b.fmul(new, c_value)]

                if inside is None:
                    (term,) = update()
                else:
                    (term,) = b.if_yield(inside, ["f32"], update, lambda: [b.f32(0.0)])
                partial = b.fadd(partial, term)
            total = b.wave_reduce(partial)
            with b.if_else(b.let("p", f"arith.cmpi eq, {lane}, {b.index(0)} : index")):
                out = _i32_mul_add(b, t, m.inner, b.add(x_column, p, "i32"))
                b.gstore(b.fadd(b.fmul(d_head, x), total), "y", out)

    if scan:  # rounded once, at the end of the call (bf16), as the chunked scans do
        each_owned(lambda p, n, at: b.gstore(b.lds_load("ssm_state", [p, n]), "ssm_state", at, state_dtype))
    return _finish(info, b, Grid(x=(m.heads, 1)))


EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {
    "conv_silu": emit_conv_silu,
    "ssd_step": emit_ssd_step,
}

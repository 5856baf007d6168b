"""Hopper's prefill scan as the decode step's recurrence (ssd_step, written once in kernels/mamba.py), a SIMT
kernel until the WGMMA scan replaces it. The chunked prefill scan on MFMA is lowering/rocdl/ssd.py. Waves are
the arch's (warps of 32 on Hopper; "4 waves" below reads 256 / W).

Notation as kernels/mamba.py: H heads of P channels, G groups of state size N (head h reads group
h // (H/G)), I = H P, conv channels C = I + 2 G N, in_proj's row zxbcdt [T, W] with W = 2 I + 2 G N + H:
z = columns [0, I), xBC = [I, I + C) (x, then B = [I, I + G N), then C), dt_raw = [I + C, I + C + H).
Buffers are row-major, indexed by i32 element offsets.

    ssd_scan_simt(zxbcdt, xbc, dt_bias f32 [H], A_log f32 [H], D f32 [H], ssm_state (f32 | bf16) [H, P, N],
                  y f32 [T, I]; dims time_step_min)            Grid x = (H, 1), 256 threads per head h
        For each token t in order: dt = max(softplus(zxbcdt[t, I + C + h] + dt_bias[h]), time_step_min) (the
        chunked scan's clamp), decay = exp(dt A), A = -exp(A_log[h]). Lane l of wave w owns state columns
        n = l + W r (B[n], C[n] of the head's group in registers) and rows p = w, w + 4, ...: the state, f32
        in a shared tile [P, N] for the call, is state[p, n] = (dt x[p]) B[n] + decay state[p, n], then
        y[t, h P + p] = D[h] x[p] + sum_n state[p, n] C[n] (the wave's shuffle butterfly; lane 0 stores).
        Each thread loads the elements it owns once, updates them per token and stores them once at the end
        (a bf16 state rounded once, as the chunked scans do). A state element is read and written by one
        thread only, so tokens need no barrier.

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


# --- ssd_scan_simt -----------------------------------------------------------------------------------------


def emit_ssd_scan_simt(info: KernelInfo) -> GpuKernel:
    """The prefill scan as the recurrence (see the module docstring): the state in shared memory, f32."""
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
    time_step_min = b.f32(float(info.dims["time_step_min"]))
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

    # The call's state lives in shared memory as f32 (each element read and written by its owner).
    each_owned(lambda p, n, at: b.lds_store(b.gload("ssm_state", at, state_dtype), "ssm_state", [p, n]))

    with b.loop(b.index(0), b.to_index(b.tokens), b.index(1)) as token:
        t = b.to_i32(token.iv)
        xbc_row = b.mul(t, b.i32(m.channels), "i32")
        raw = b.gload("zxbcdt", _i32_mul_add(b, t, m.width, b.add(head, b.i32(m.inner + m.channels), "i32")))
        dt = b.fmax(softplus(b, b.fadd(raw, dt_bias)), time_step_min)
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
            partial = b.f32(0.0)
            for (n, inside), b_value, c_value in zip(columns, b_values, c_values, strict=True):

                def update(n: str = n, b_value: str = b_value, c_value: str = c_value) -> list[str]:
                    where = [row.iv, b.to_index(n)]
                    new = b.fadd(b.fmul(coef, b_value), b.fmul(decay, b.lds_load("ssm_state", where)))
                    b.lds_store(new, "ssm_state", where)
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

    # Rounded once, at the end of the call (bf16), as the chunked scans do.
    each_owned(lambda p, n, at: b.gstore(b.lds_load("ssm_state", [p, n]), "ssm_state", at, state_dtype))
    return _finish(info, b, Grid(x=(m.heads, 1)))

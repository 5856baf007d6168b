"""SIMT kernels of the per-token rows, for every GPU target (tiles: tiling/gpu_rows.py; the builder
from lowering/gpu/simt.py), and the registry of the hand-emitted SIMT kernels both GPU targets share.

A row kernel is one wave of W lanes per token (W = 64 on CDNA, a warp of 32 on Hopper; "64" below reads
W): workgroup x = the token's row t (Grid x = ("tokens", 1)), lane l handles features c = l, l + W, ...
(consecutive lanes, consecutive addresses: every load
and store is coalesced), and sums over the row are a per-lane partial sum followed by a butterfly of
`gpu.shuffle xor` (GpuKernelBuilder.wave_reduce), after which every lane holds the total. No LDS, no
barrier. Global offsets are i32 element indices, row-major: element [t, c] of a [T, F] buffer is t*F + c.
Semantics are those of the x86 kernels (lowering/x86/basic.py, moe.py, attention.py), op for op where the
order of float operations is defined there; sums over a row are reassociated (x86 allows it too).

Operands (launch order, then %tokens, %position):

    moe_router(logits f32 [T, E], bias f32 [E], ids i64 [T, K], weights f32 [T, K])
        lane l owns experts e = l + 64 r (r < ceil(E / 64), held in registers: score = 1 / (1 + exp(-logit)),
        choice = score + bias, -inf past E). Groups (when topk_group < n_group): per group g of E / n_group
        experts, each lane's best two choices in g (x86's update rule), merged over the wave by shuffles into
        the group's best two; group score = best + second (+ 0 for one-expert groups). Every lane then runs
        x86's repeated arg-max over the group scores (strict `>`, index 0 when none beats -inf) topk_group
        times, and sets the choice of experts of dropped groups to -inf. Top-k: K rounds of a wave arg-max
        over (choice, expert, score) — a lane's slots by strict `>`, then a shuffle butterfly keeping the
        larger choice, the lower expert on equal choices (x86's stable order, and its expert 0 when every
        choice is -inf) — whose winner's choice becomes -inf. weights = score / (sum + 1e-20) when
        norm_topk_prob (sum in pick order), times routed_scaling_factor; lane 0 stores ids and weights.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.lowering.gpu.simt import simt_builder
from tessera.lowering.rocdl.kernel_text import GpuKernel, GpuKernelBuilder, Grid, KernelInfo

NEG_INF = "0xFF800000"


def _builder(info: KernelInfo, operands: list[str]) -> GpuKernelBuilder:
    b = simt_builder(info, operands)
    assert b.threads == b.wave_size, f"{info.name}: a row kernel is one wave ({b.wave_size} lanes)"
    return b


def _finish(info: KernelInfo, b: GpuKernelBuilder, grid: Grid) -> GpuKernel:
    return GpuKernel(info.name, b.render(), b.threads, grid, sum(tile.bytes for tile in info.lds))


def _offset(b: GpuKernelBuilder, base: str, column: str) -> str:
    """base (i32) + column (index), as an i32 element offset."""
    return b.add(base, b.to_i32(column), "i32")


def _row_base(b: GpuKernelBuilder, row: str, width: int) -> str:
    """The i32 offset of row `row` (index) of a [*, width] buffer."""
    return b.mul(b.to_i32(row), b.i32(width), "i32")


def _row_sum(b: GpuKernelBuilder, lane: str, width: int, term: Callable[[str], str]) -> str:
    """sum of term(c) over c in [0, width) (lane-strided partial sums, then the wave's butterfly)."""
    with b.loop(lane, b.index(width), b.index(b.wave_size), [(b.f32(0.0), "f32")]) as column:
        column.yield_(b.fadd(column.args[0], term(column.iv)))
    return b.wave_reduce(column.results[0])


def _is_lane0(b: GpuKernelBuilder, lane: str) -> str:
    return b.let("p", f"arith.cmpi eq, {lane}, {b.index(0)} : index")


def _select(b: GpuKernelBuilder, cond: str, x: str, y: str, type_: str = "f32") -> str:
    return b.let("s", f"arith.select {cond}, {x}, {y} : {type_}")


def _fcmp(b: GpuKernelBuilder, predicate: str, x: str, y: str) -> str:
    return b.let("p", f"arith.cmpf {predicate}, {x}, {y} : f32")


def _icmp(b: GpuKernelBuilder, predicate: str, x: str, y: str) -> str:
    return b.let("p", f"arith.cmpi {predicate}, {x}, {y} : i32")


def _shuffle(b: GpuKernelBuilder, value: str, offset: int, type_: str) -> str:
    return b.shuffle_xor(value, offset, type_)


# --- moe_router --------------------------------------------------------------------------------------------


class _Router:
    """moe_router's pieces over one token's experts, held as `slots` registers per lane (see the docstring)."""

    def __init__(self, b: GpuKernelBuilder, info: KernelInfo) -> None:
        self.b = b
        self.experts, self.top_k = info.dim("num_experts"), info.dim("top_k")
        self.groups, self.topk_group = info.dim("n_group"), info.dim("topk_group")
        self.per_group = self.experts // self.groups
        self.wave = b.wave_size
        self.slots = -(-self.experts // self.wave)
        self.neg_inf = b.const(NEG_INF, "f32")

    def load(self, lane: str, token: str) -> tuple[list[str], list[str], list[str]]:
        """Per slot r: (expert e = lane + 64 r as i32, its sigmoid score, its choice score + bias); past E
        the score is 0 and the choice -inf (the loads read expert 0 instead)."""
        b = self.b
        base = _row_base(b, token, self.experts)
        lane32 = b.to_i32(lane)
        experts, scores, choices = [], [], []
        for r in range(self.slots):
            expert = lane32 if r == 0 else b.add(lane32, b.i32(self.wave * r), "i32")
            valid = None if self.wave * (r + 1) <= self.experts else _icmp(b, "ult", expert, b.i32(self.experts))
            at = expert if valid is None else _select(b, valid, expert, b.i32(0), "i32")
            logit = b.gload("logits", b.add(base, at, "i32"))
            negated = b.let("f", f"arith.negf {logit} : f32")
            denominator = b.fadd(b.f32(1.0), b.math("exp", negated))
            score = b.let("f", f"arith.divf {b.f32(1.0)}, {denominator} : f32")
            choice = b.fadd(score, b.gload("bias", at))
            if valid is not None:
                score = _select(b, valid, score, b.f32(0.0))
                choice = _select(b, valid, choice, self.neg_inf)
            experts.append(expert)
            scores.append(score)
            choices.append(choice)
        return experts, scores, choices

    def group_mask(self, experts: list[str], choices: list[str]) -> list[str]:
        """The choices with those of the groups not among the best topk_group set to -inf."""
        b = self.b
        if self.topk_group >= self.groups:
            return choices  # x86's repeated arg-max keeps every group
        group_of = [b.div(expert, b.i32(self.per_group), "i32") for expert in experts]
        scores = [self.group_score(group_of, choices, g) for g in range(self.groups)]
        false, true = b.const("0", "i1"), b.const("1", "i1")
        kept = [false] * self.groups
        for _ in range(self.topk_group):
            best, best_value = b.i32(0), self.neg_inf
            for g, score in enumerate(scores):
                better = _fcmp(b, "ogt", score, best_value)
                best = _select(b, better, b.i32(g), best, "i32")
                best_value = _select(b, better, score, best_value)
            for g in range(self.groups):
                hit = _icmp(b, "eq", best, b.i32(g))
                kept[g] = _select(b, hit, true, kept[g], "i1")
                scores[g] = _select(b, hit, self.neg_inf, scores[g])
        masked = []
        for group, choice in zip(group_of, choices, strict=True):
            keep = false
            for g in range(self.groups):
                keep = _select(b, _icmp(b, "eq", group, b.i32(g)), kept[g], keep, "i1")
            masked.append(_select(b, keep, choice, self.neg_inf))
        return masked

    def group_score(self, group_of: list[str], choices: list[str], g: int) -> str:
        """best + second best choice of group g (best + 0 for one-expert groups), in every lane."""
        b = self.b
        best, second = self.neg_inf, self.neg_inf
        for group, choice in zip(group_of, choices, strict=True):  # x86's update, over this lane's slots
            value = _select(b, _icmp(b, "eq", group, b.i32(g)), choice, self.neg_inf)
            above_best, above_second = _fcmp(b, "ogt", value, best), _fcmp(b, "ogt", value, second)
            second = _select(b, above_best, best, _select(b, above_second, value, second))
            best = _select(b, above_best, value, best)
        offset = b.wave_size // 2
        while offset >= 1:  # the best two of the union of two lanes' best two
            other_best, other_second = _shuffle(b, best, offset, "f32"), _shuffle(b, second, offset, "f32")
            other_wins = _fcmp(b, "ogt", other_best, best)
            lower_best = _select(b, other_wins, best, other_best)
            best = _select(b, other_wins, other_best, best)
            second = _select(b, _fcmp(b, "ogt", other_second, second), other_second, second)
            second = _select(b, _fcmp(b, "ogt", lower_best, second), lower_best, second)
            offset //= 2
        return b.fadd(best, second if self.per_group > 1 else b.f32(0.0))

    def pick(self, experts: list[str], scores: list[str], choices: list[str]) -> tuple[str, str, list[str]]:
        """The wave arg-max of the choices: (expert, its score, the choices with the winner's set to -inf)."""
        b = self.b
        value, expert, score = choices[0], experts[0], scores[0]
        for r in range(1, self.slots):  # a lane's experts ascend with r: strict > keeps the lower on ties
            better = _fcmp(b, "ogt", choices[r], value)
            value = _select(b, better, choices[r], value)
            expert = _select(b, better, experts[r], expert, "i32")
            score = _select(b, better, scores[r], score)
        offset = b.wave_size // 2
        while offset >= 1:
            other_value = _shuffle(b, value, offset, "f32")
            other_expert = _shuffle(b, expert, offset, "i32")
            other_score = _shuffle(b, score, offset, "f32")
            tie = b.let(
                "p",
                f"arith.andi {_fcmp(b, 'oeq', other_value, value)}, {_icmp(b, 'ult', other_expert, expert)} : i1",
            )
            other_wins = b.let("p", f"arith.ori {_fcmp(b, 'ogt', other_value, value)}, {tie} : i1")
            value = _select(b, other_wins, other_value, value)
            expert = _select(b, other_wins, other_expert, expert, "i32")
            score = _select(b, other_wins, other_score, score)
            offset //= 2
        remaining = [
            _select(b, _icmp(b, "eq", mine, expert), self.neg_inf, choice)
            for mine, choice in zip(experts, choices, strict=True)
        ]
        return expert, score, remaining


def emit_moe_router(info: KernelInfo) -> GpuKernel:
    norm = bool(int(info.dims["norm_topk_prob"]))
    scaling = float(info.dims["routed_scaling_factor"])
    b = _builder(info, ["logits", "bias", "ids", "weights"])
    router = _Router(b, info)
    lane, token = b.thread_id(), b.block_id("x")
    experts, scores, choices = router.load(lane, token)
    choices = router.group_mask(experts, choices)
    picked: list[tuple[str, str]] = []
    total = b.f32(0.0)
    for _ in range(router.top_k):
        expert, score, choices = router.pick(experts, scores, choices)
        picked.append((expert, score))
        total = b.fadd(total, score)
    normaliser = b.fadd(total, b.f32(1e-20)) if norm else None
    base = _row_base(b, token, router.top_k)
    with b.if_else(_is_lane0(b, lane)):
        for j, (expert, score) in enumerate(picked):
            at = b.add(base, b.i32(j), "i32")
            b.gstore(b.let("c", f"arith.extui {expert} : i32 to i64"), "ids", at, "i64")
            weight = score if normaliser is None else b.let("f", f"arith.divf {score}, {normaliser} : f32")
            b.gstore(b.fmul(weight, b.f32(scaling)), "weights", at)
    return _finish(info, b, Grid(x=("tokens", 1)))


EMITTERS: dict[str, Callable[[KernelInfo], GpuKernel]] = {
    "moe_router": emit_moe_router,
}

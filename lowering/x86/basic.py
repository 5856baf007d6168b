"""The MoE router as an x86 kernel (the experts are lowering/x86/moe.py; embedding and the norms are written
once in kernels/rows.py).

Every kernel takes a row (token) range [begin, end) last, so the runtime can split tokens over threads.
Reductions carry `fastmath<reassoc, contract>` so that LLVM may vectorise them (float32 sums in a
different order: well inside the 1e-4 contract).

    moe_router(logits: memref<?xExf32>, bias: memref<Exf32>, ids: memref<?xKxi64>, weights: memref<?xKxf32>,
               begin, end)
        sigmoid scores; groups ranked by the sum of their best two (score + bias); the best topk_group
        groups kept; the top_k experts among them by score + bias (ties: lower index first, as a stable
        sort); weights = scores of those experts, renormalised if norm_topk_prob, times the scaling factor
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.lowering.mlir_text import float_literal as f32_literal

FM = "fastmath<reassoc,contract>"


def _header(name: str, args: list[str]) -> list[str]:
    return [
        f"func.func @{name}({', '.join(args)}, %begin: index, %end: index) {{",
        "  %c0 = arith.constant 0 : index",
        "  %c1 = arith.constant 1 : index",
        "  %zero = arith.constant 0.0 : f32",
        "  %one = arith.constant 1.0 : f32",
    ]


@dataclass(frozen=True)
class RouterDims:
    num_experts: int
    top_k: int
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    routed_scaling_factor: float


def emit_moe_router(name: str, d: RouterDims) -> str:
    """Selection by repeated arg-max with a strict `>`: the lowest index wins a tie, as a stable sort."""
    e, k, groups = d.num_experts, d.top_k, d.n_group
    per_group = e // groups
    logits, ids, weights = f"memref<?x{e}xf32>", f"memref<?x{k}xi64>", f"memref<?x{k}xf32>"
    lines = [
        *_header(name, [f"%logits: {logits}", f"%bias: memref<{e}xf32>", f"%ids: {ids}", f"%weights: {weights}"]),
        f"  %experts = arith.constant {e} : index",
        f"  %groups = arith.constant {groups} : index",
        f"  %per_group = arith.constant {per_group} : index",
        f"  %k = arith.constant {k} : index",
        f"  %topk_group = arith.constant {d.topk_group} : index",
        "  %neg_inf = arith.constant 0xFF800000 : f32",
        f"  %scaling = arith.constant {f32_literal(d.routed_scaling_factor)} : f32",
        "  %tiny = arith.constant 1.0e-20 : f32",
        # i8 flags: MLIR's memref lowering stores no i1
        "  %true = arith.constant 1 : i8",
        "  %false = arith.constant 0 : i8",
        # scores (sigmoid), choice = score + bias (or -inf once taken / dropped), group scores, kept groups
        f"  %scores = memref.alloca() : memref<{e}xf32>",
        f"  %choice = memref.alloca() : memref<{e}xf32>",
        f"  %group_score = memref.alloca() : memref<{groups}xf32>",
        f"  %group_kept = memref.alloca() : memref<{groups}xi8>",
        "  scf.for %t = %begin to %end step %c1 {",
        "    scf.for %x = %c0 to %experts step %c1 {",
        f"      %l = memref.load %logits[%t, %x] : {logits}",
        "      %nl = arith.negf %l : f32",
        "      %ex = math.exp %nl : f32",
        "      %den = arith.addf %one, %ex : f32",
        "      %s = arith.divf %one, %den : f32",
        f"      memref.store %s, %scores[%x] : memref<{e}xf32>",
        f"      %b = memref.load %bias[%x] : memref<{e}xf32>",
        "      %c = arith.addf %s, %b : f32",
        f"      memref.store %c, %choice[%x] : memref<{e}xf32>",
        "    }",
        # group score: best + second best of each group (per_group 1: the best alone)
        "    scf.for %g = %c0 to %groups step %c1 {",
        "      %base = arith.muli %g, %per_group : index",
        "      %top:2 = scf.for %j = %c0 to %per_group step %c1 iter_args(%best = %neg_inf, %second = %neg_inf) -> (f32, f32) {",
        "        %x = arith.addi %base, %j : index",
        f"        %v = memref.load %choice[%x] : memref<{e}xf32>",
        "        %gt1 = arith.cmpf ogt, %v, %best : f32",
        "        %gt2 = arith.cmpf ogt, %v, %second : f32",
        "        %new_second_a = arith.select %gt2, %v, %second : f32",
        "        %new_second = arith.select %gt1, %best, %new_second_a : f32",
        "        %new_best = arith.select %gt1, %v, %best : f32",
        "        scf.yield %new_best, %new_second : f32, f32",
        "      }",
        f"      %has_second = arith.constant {'true' if per_group > 1 else 'false'}",
        "      %second_or_zero = arith.select %has_second, %top#1, %zero : f32",
        "      %gs = arith.addf %top#0, %second_or_zero : f32",
        f"      memref.store %gs, %group_score[%g] : memref<{groups}xf32>",
        f"      memref.store %false, %group_kept[%g] : memref<{groups}xi8>",
        "    }",
        "    scf.for %r = %c0 to %topk_group step %c1 {",
        *_argmax("%group_score", "%groups", groups, "%gbest", indent="      "),
        f"      memref.store %true, %group_kept[%gbest] : memref<{groups}xi8>",
        f"      memref.store %neg_inf, %group_score[%gbest] : memref<{groups}xf32>",
        "    }",
        # experts of dropped groups cannot be chosen
        "    scf.for %x = %c0 to %experts step %c1 {",
        "      %g = arith.divui %x, %per_group : index",
        f"      %kept_flag = memref.load %group_kept[%g] : memref<{groups}xi8>",
        "      %kept = arith.cmpi ne, %kept_flag, %false : i8",
        "      scf.if %kept {",
        "      } else {",
        f"        memref.store %neg_inf, %choice[%x] : memref<{e}xf32>",
        "      }",
        "    }",
        "    %total = scf.for %j = %c0 to %k step %c1 iter_args(%acc = %zero) -> (f32) {",
        *_argmax("%choice", "%experts", e, "%xbest", indent="      "),
        f"      memref.store %neg_inf, %choice[%xbest] : memref<{e}xf32>",
        "      %xi = arith.index_cast %xbest : index to i64",
        f"      memref.store %xi, %ids[%t, %j] : {ids}",
        f"      %w = memref.load %scores[%xbest] : memref<{e}xf32>",
        f"      memref.store %w, %weights[%t, %j] : {weights}",
        "      %next = arith.addf %acc, %w : f32",
        "      scf.yield %next : f32",
        "    }",
        "    %denominator = arith.addf %total, %tiny : f32",
        f"    %norm = arith.constant {'true' if d.norm_topk_prob else 'false'}",
        "    %normaliser = arith.select %norm, %denominator, %one : f32",
        "    scf.for %j = %c0 to %k step %c1 {",
        f"      %w = memref.load %weights[%t, %j] : {weights}",
        "      %wn = arith.divf %w, %normaliser : f32",
        "      %ws = arith.mulf %wn, %scaling : f32",
        f"      memref.store %ws, %weights[%t, %j] : {weights}",
        "    }",
        "  }",
        "  return",
        "}",
    ]
    return "\n".join(lines)


def _argmax(buffer: str, count: str, size: int, result: str, indent: str) -> list[str]:
    """Index of the largest entry of a 1-D buffer, the first one on ties (strict `>`)."""
    tag = result.lstrip("%")
    return [
        f"{indent}{result}, %{tag}_value = scf.for %i = %c0 to {count} step %c1 "
        f"iter_args(%bi = %c0, %bv = %neg_inf) -> (index, f32) {{",
        f"{indent}  %v = memref.load {buffer}[%i] : memref<{size}xf32>",
        f"{indent}  %gt = arith.cmpf ogt, %v, %bv : f32",
        f"{indent}  %ni = arith.select %gt, %i, %bi : index",
        f"{indent}  %nv = arith.select %gt, %v, %bv : f32",
        f"{indent}  scf.yield %ni, %nv : index, f32",
        f"{indent}}}",
    ]

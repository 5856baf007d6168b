"""tessera.schedule: Schedule-IR — the model as two programs, `@prefill` and `@decode`, over explicit buffers.

Graph-IR says *what* a layer computes; Schedule-IR says in which steps and over which memory:

- State is declared once at module level (`tessera.schedule.state`): a `conv_state` and an `ssm_state` per
  Mamba layer, a `k_cache` and a `v_cache` per attention layer, sized from the compile section (batch,
  max sequence length). Programs name it with `tessera.schedule.state_ref`; nothing else survives a call.
- Every step writes into buffers it is given (destination passing): `ins(...)` are read, `outs(...)` are
  written (an `accumulate` matmul and the state operands are read *and* written). A `?` dimension is the
  token count of the call; `tessera.schedule.alloc` makes a [tokens, features] buffer, and the buffer
  planning pass gives each one a `slot` in an arena reused by liveness.
- Each step is one kernel launch of a later level. The Mamba mixer is the chunked SSD scan in prefill
  (`ssd_scan`, chunk_size) and the single-step recurrence in decode (`ssd_step`); attention is a tiled
  online-softmax over the KV cache in both (a decode call has one query); fusion decisions are attributes:
  `epilogue` of a matmul (`store`, `accumulate` = residual add, `relu2`), the gate of `gated_rmsnorm`.

```mlir
tessera.schedule.state @layers.0.ssm_state : memref<1x8x8x16xf32> {kind = "ssm_state", layer = 0 : i64}
func.func @prefill(%ids : memref<?xi64>) -> memref<?x301xf32> {
  %w = tessera.schedule.weight "layers.0.mixer.in_proj.weight" : memref<324x64xf32>
  %zxbcdt = tessera.schedule.alloc : memref<?x324xf32>
  tessera.schedule.matmul ins(%normed, %w : memref<?x64xf32>, memref<324x64xf32>)
      outs(%zxbcdt : memref<?x324xf32>) {epilogue = "store"}
  ...
}
```
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    I64,
    ArrayAttr,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    StringAttr,
    SymbolNameConstraint,
    SymbolRefAttr,
    UnitAttr,
)
from xdsl.ir import Attribute, Dialect, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import SymbolOpInterface
from xdsl.utils.exceptions import VerifyException

# Set on each program by tessera-schedule-plan-buffers: bytes per token of each arena slot.
SLOT_BYTES = "tessera.slot_bytes"
# attention_partials, moe_hidden: scratch a GPU decode step's split attention hands its combine, and its expert
# GEMVs' up product the down one, within one call (lowering/decode_kernels.py); never carried between calls.
STATE_KINDS = ("conv_state", "ssm_state", "k_cache", "v_cache", "attention_partials", "moe_hidden")
EPILOGUES = ("store", "accumulate", "relu2")


def memref_shape(op_name: str, role: str, value: SSAValue | Attribute) -> tuple[int, ...]:
    attr_type = value.type if isinstance(value, SSAValue) else value
    if not isinstance(attr_type, MemRefType):
        raise VerifyException(f"{op_name}: {role} must be a memref, got {attr_type}")
    return tuple(attr_type.get_shape())


def _features(op_name: str, role: str, value: SSAValue) -> int:
    shape = memref_shape(op_name, role, value)
    if len(shape) != 2 or shape[0] != DYNAMIC_INDEX or shape[1] == DYNAMIC_INDEX:
        raise VerifyException(
            f"{op_name}: {role} must be a [tokens, features] buffer (memref<?xNx..>), got {value.type}"
        )
    return shape[1]


def element_bytes(element: Attribute) -> int:
    text = str(element)
    if text in ("f32", "i32"):
        return 4
    if text in ("bf16", "f16", "i16"):
        return 2
    if text in ("i64", "f64", "index"):
        return 8
    raise VerifyException(f"tessera: no byte size for element type {text}")


@irdl_op_definition
class StateOp(IRDLOperation):
    """State that lives across calls, zeroed when a sequence starts.

    ```mlir
    tessera.schedule.state @layers.3.k_cache : memref<1024x2x16xf32> {kind = "k_cache", layer = 3 : i64}
    ```
    """

    name = "tessera.schedule.state"
    sym_name = prop_def(SymbolNameConstraint())
    type = prop_def(MemRefType)
    kind = prop_def(StringAttr)
    layer = prop_def(IntegerAttr[I64])
    traits = traits_def(SymbolOpInterface())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$sym_name `:` $type attr-dict"

    def verify_(self) -> None:
        if self.kind.data not in STATE_KINDS:
            raise VerifyException(f"{self.name} @{self.sym_name.data}: kind must be one of {STATE_KINDS}")
        if DYNAMIC_INDEX in self.type.get_shape():
            raise VerifyException(f"{self.name} @{self.sym_name.data}: state must have a static shape")


@irdl_op_definition
class StateRefOp(IRDLOperation):
    """The buffer of a module-level state, in a program."""

    name = "tessera.schedule.state_ref"
    state = prop_def(SymbolRefAttr)
    result = result_def(MemRefType)
    assembly_format = "$state attr-dict `:` type($result)"


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A weight of the Tessera layout, read-only in every program."""

    name = "tessera.schedule.weight"
    weight_name = prop_def(StringAttr, prop_name="name")
    # A weight fused at load time: these layout tensors concatenated along dim 0 (e.g. q, k, v).
    parts = opt_prop_def(ArrayAttr[StringAttr])
    # A weight whose columns are multiplied at load by another weight (an RMSNorm's scale folded into
    # the projection that reads the norm: W' = W diag(g)).
    column_scale = opt_prop_def(StringAttr)
    result = result_def(MemRefType)
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$name attr-dict `:` type($result)"

    def verify_(self) -> None:
        if DYNAMIC_INDEX in memref_shape(self.name, "result", self.result):
            raise VerifyException(f"{self.name} '{self.weight_name.data}': weights must have a static shape")


@irdl_op_definition
class AllocOp(IRDLOperation):
    """A [tokens, features] (or [tokens]) scratch buffer; `slot` is set by buffer planning."""

    name = "tessera.schedule.alloc"
    result = result_def(MemRefType)
    slot = opt_prop_def(IntegerAttr[I64])
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "attr-dict `:` type($result)"

    def verify_(self) -> None:
        if memref_shape(self.name, "result", self.result) != (DYNAMIC_INDEX,):
            _features(self.name, "result", self.result)


def _per_token(op_name: str, role: str, value: SSAValue) -> None:
    if memref_shape(op_name, role, value) != (DYNAMIC_INDEX,):
        raise VerifyException(f"{op_name}: {role} must be a [tokens] buffer (memref<?xf32>), got {value.type}")


class StepOp(IRDLOperation):
    """A step of a program: reads `ins`, writes `outs`; `ARITY` is (ins, outs) and is checked."""

    ins = var_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = "`ins` `(` $ins `:` type($ins) `)` `outs` `(` $outs `:` type($outs) `)` attr-dict"
    ARITY: ClassVar[tuple[int, int]] = (0, 0)

    def verify_(self) -> None:
        if (len(self.ins), len(self.outs)) != self.ARITY:
            raise VerifyException(
                f"{self.name}: expected {self.ARITY[0]} ins and {self.ARITY[1]} outs, "
                f"got {len(self.ins)} and {len(self.outs)}"
            )
        self.verify_step()

    def verify_step(self) -> None:
        pass


def _int(attr: IntegerAttr) -> int:
    return attr.value.data


@irdl_op_definition
class EmbeddingOp(StepOp):
    """ins(ids [tokens] i64, table [V, D]) outs(h [tokens, D])."""

    name = "tessera.schedule.embedding"
    ARITY: ClassVar[tuple[int, int]] = (2, 1)

    def verify_step(self) -> None:
        table = memref_shape(self.name, "table", self.ins[1])
        if _features(self.name, "h", self.outs[0]) != table[1]:
            raise VerifyException(f"{self.name}: h features must equal the table's width {table[1]}")


@irdl_op_definition
class RMSNormOp(StepOp):
    """ins(x [tokens, D], weight [D]) outs(y [tokens, D])."""

    name = "tessera.schedule.rmsnorm"
    epsilon = prop_def(FloatAttr[Float64Type])
    ARITY: ClassVar[tuple[int, int]] = (2, 1)

    def verify_step(self) -> None:
        features = _features(self.name, "x", self.ins[0])
        if (
            memref_shape(self.name, "weight", self.ins[1]) != (features,)
            or _features(self.name, "y", self.outs[0]) != features
        ):
            raise VerifyException(f"{self.name}: weight and y must have x's {features} features")


@irdl_op_definition
class RMSScaleOp(StepOp):
    """ins(h [tokens, D]) outs(rstd [tokens]): 1 / sqrt(mean(h^2) + epsilon) per token — what remains of an
    RMSNorm whose scale was folded into the projection reading it (a matmul with `row_scale`)."""

    name = "tessera.schedule.rms_scale"
    epsilon = prop_def(FloatAttr[Float64Type])
    ARITY: ClassVar[tuple[int, int]] = (1, 1)

    def verify_step(self) -> None:
        _features(self.name, "h", self.ins[0])
        _per_token(self.name, "rstd", self.outs[0])


@irdl_op_definition
class MatmulOp(StepOp):
    """ins(x [tokens, K], weight [N, K], bias [N]?, row_scale [tokens]?) outs(y [tokens, N]):
    y (epilogue)= row_scale * (x @ weight^T) (+ bias).

    `accumulate` adds into y (the residual stream); `relu2` stores relu(.)^2; `row_scale` (the unit
    property) says the last input scales each row — a folded RMSNorm.
    """

    name = "tessera.schedule.matmul"
    epilogue = prop_def(StringAttr)
    row_scale = opt_prop_def(UnitAttr)

    def verify_(self) -> None:
        scaled = self.row_scale is not None
        if len(self.ins) - int(scaled) not in (2, 3) or len(self.outs) != 1:
            raise VerifyException(f"{self.name}: expected ins(x, weight[, bias][, row_scale]) and outs(y)")
        if scaled:
            _per_token(self.name, "row_scale", self.ins[-1])
        k = _features(self.name, "x", self.ins[0])
        weight = memref_shape(self.name, "weight", self.ins[1])
        n = _features(self.name, "y", self.outs[0])
        if weight != (n, k):
            raise VerifyException(f"{self.name}: weight is [{weight[0]}, {weight[1]}], expected [{n}, {k}] (y, x)")
        if len(self.ins) - int(scaled) == 3 and memref_shape(self.name, "bias", self.ins[2]) != (n,):
            raise VerifyException(f"{self.name}: bias must be [{n}]")
        if self.epilogue.data not in EPILOGUES:
            raise VerifyException(f"{self.name}: epilogue must be one of {EPILOGUES}, got '{self.epilogue.data}'")


class _MambaStep(StepOp):
    """Steps of the Mamba-2 mixer; they share its dimensions."""

    num_heads = prop_def(IntegerAttr[I64])
    head_dim = prop_def(IntegerAttr[I64])
    n_groups = prop_def(IntegerAttr[I64])
    state_size = prop_def(IntegerAttr[I64])
    conv_kernel = prop_def(IntegerAttr[I64])
    chunk_size = prop_def(IntegerAttr[I64])
    epsilon = prop_def(FloatAttr[Float64Type])
    time_step_min = prop_def(FloatAttr[Float64Type])

    def dims(self) -> tuple[int, int, int, int, int]:
        return (
            _int(self.num_heads),
            _int(self.head_dim),
            _int(self.n_groups),
            _int(self.state_size),
            _int(self.conv_kernel),
        )

    def verify_step(self) -> None:
        heads, head_dim, groups, state, _ = self.dims()
        if heads % groups:
            raise VerifyException(f"{self.name}: n_groups ({groups}) must divide num_heads ({heads})")
        inner = heads * head_dim
        width = 2 * inner + 2 * groups * state + heads
        if _features(self.name, "zxbcdt", self.ins[0]) != width:
            raise VerifyException(f"{self.name}: zxbcdt must have {width} features (2*I + 2*G*N + H)")


@irdl_op_definition
class ConvSiluOp(_MambaStep):
    """ins(zxbcdt, conv_weight [C, K], conv_bias [C]?) outs(conv_state [C, K-1], xbc [tokens, C])."""

    name = "tessera.schedule.conv_silu"
    ARITY: ClassVar[tuple[int, int]] = (3, 2)

    def verify_(self) -> None:
        if len(self.ins) == 2 and len(self.outs) == 2:  # a model without conv bias
            self.verify_step()
            return
        super().verify_()


@irdl_op_definition
class SSDScanOp(_MambaStep):
    """Prefill: the chunked SSD scan. ins(zxbcdt, xbc, dt_bias, A_log, D) outs(ssm_state, y [tokens, I])."""

    name = "tessera.schedule.ssd_scan"
    ARITY: ClassVar[tuple[int, int]] = (5, 2)


@irdl_op_definition
class SSDStepOp(_MambaStep):
    """Decode: the single-step recurrence. ins(zxbcdt, xbc, dt_bias, A_log, D) outs(ssm_state, y)."""

    name = "tessera.schedule.ssd_step"
    ARITY: ClassVar[tuple[int, int]] = (5, 2)


@irdl_op_definition
class GatedRMSNormOp(_MambaStep):
    """ins(zxbcdt (gate z), y, norm_weight [I]) outs(out [tokens, I]): group-RMSNorm(y * silu(z)) * weight."""

    name = "tessera.schedule.gated_rmsnorm"
    ARITY: ClassVar[tuple[int, int]] = (3, 1)


class _AttentionStep(StepOp):
    num_heads = prop_def(IntegerAttr[I64])
    num_kv_heads = prop_def(IntegerAttr[I64])
    head_dim = prop_def(IntegerAttr[I64])

    def verify_step(self) -> None:
        heads, kv_heads, head_dim = _int(self.num_heads), _int(self.num_kv_heads), _int(self.head_dim)
        if heads % kv_heads:
            raise VerifyException(f"{self.name}: num_kv_heads ({kv_heads}) must divide num_heads ({heads})")
        width = (heads + 2 * kv_heads) * head_dim
        if _features(self.name, "qkv", self.ins[0]) != width:
            raise VerifyException(f"{self.name}: qkv must have {width} features ((H + 2*Hkv) * head_dim)")


@irdl_op_definition
class KVAppendOp(_AttentionStep):
    """ins(qkv) outs(k_cache, v_cache): the call's keys and values, written at the sequence position."""

    name = "tessera.schedule.kv_append"
    ARITY: ClassVar[tuple[int, int]] = (1, 2)


@irdl_op_definition
class AttentionOp(_AttentionStep):
    """ins(qkv, k_cache, v_cache) outs(out [tokens, H*hd]): causal GQA, tiled online softmax (flash)."""

    name = "tessera.schedule.attention"
    ARITY: ClassVar[tuple[int, int]] = (3, 1)


class _MoEStep(StepOp):
    num_experts = prop_def(IntegerAttr[I64])
    top_k = prop_def(IntegerAttr[I64])


@irdl_op_definition
class MoERouterOp(_MoEStep):
    """ins(router_logits [tokens, E], correction_bias [E]) outs(topk_ids [tokens, k] i64, topk_weights [tokens, k]).

    Sigmoid scores; group-limited top-k on score + bias (the bias steers the choice only); optional
    renormalisation; scaling by routed_scaling_factor.
    """

    name = "tessera.schedule.moe_router"
    n_group = prop_def(IntegerAttr[I64])
    topk_group = prop_def(IntegerAttr[I64])
    norm_topk_prob = prop_def(IntegerAttr[I64])
    routed_scaling_factor = prop_def(FloatAttr[Float64Type])
    ARITY: ClassVar[tuple[int, int]] = (2, 2)

    def verify_step(self) -> None:
        experts, top_k = _int(self.num_experts), _int(self.top_k)
        if _features(self.name, "router_logits", self.ins[0]) != experts:
            raise VerifyException(f"{self.name}: router_logits must have num_experts ({experts}) features")
        for role, value in (("topk_ids", self.outs[0]), ("topk_weights", self.outs[1])):
            if _features(self.name, role, value) != top_k:
                raise VerifyException(f"{self.name}: {role} must have top_k ({top_k}) features")


@irdl_op_definition
class MoEExpertsOp(_MoEStep):
    """ins(x [tokens, L], topk_ids, experts_up [E, F, L], experts_down [E, L, F]) outs(contrib [tokens, k*L]).

    contrib[t, j*L:(j+1)*L] = down[e](relu(up[e] x[t])^2) for e = topk_ids[t, j]: expert-major, so each
    expert's weights are read once for all the tokens routed to it; every (t, j) slot has one writer.
    """

    name = "tessera.schedule.moe_experts"
    ARITY: ClassVar[tuple[int, int]] = (4, 1)

    def verify_step(self) -> None:
        latent = _features(self.name, "x", self.ins[0])
        up = memref_shape(self.name, "experts_up", self.ins[2])
        down = memref_shape(self.name, "experts_down", self.ins[3])
        experts, top_k = _int(self.num_experts), _int(self.top_k)
        if len(up) != 3 or up[0] != experts or up[2] != latent or down != (experts, latent, up[1]):
            raise VerifyException(f"{self.name}: experts_up must be [E, F, {latent}] and experts_down [E, {latent}, F]")
        if _features(self.name, "contrib", self.outs[0]) != top_k * latent:
            raise VerifyException(f"{self.name}: contrib must have top_k * {latent} = {top_k * latent} features")


@irdl_op_definition
class MoECombineOp(_MoEStep):
    """ins(contrib [tokens, k*L], topk_weights [tokens, k]) outs(y [tokens, L]):
    y (epilogue)= sum_j topk_weights[t, j] * contrib[t, j*L:(j+1)*L]."""

    name = "tessera.schedule.moe_combine"
    epilogue = prop_def(StringAttr)
    ARITY: ClassVar[tuple[int, int]] = (2, 1)

    def verify_step(self) -> None:
        latent = _features(self.name, "y", self.outs[0])
        if _features(self.name, "contrib", self.ins[0]) != _int(self.top_k) * latent:
            raise VerifyException(f"{self.name}: contrib must have top_k * {latent} features")
        if self.epilogue.data not in ("store", "accumulate"):
            raise VerifyException(f"{self.name}: epilogue must be store or accumulate")


TesseraSchedule = Dialect(
    "tessera.schedule",
    [
        StateOp,
        StateRefOp,
        WeightOp,
        AllocOp,
        EmbeddingOp,
        RMSNormOp,
        RMSScaleOp,
        MatmulOp,
        ConvSiluOp,
        SSDScanOp,
        SSDStepOp,
        GatedRMSNormOp,
        KVAppendOp,
        AttentionOp,
        MoERouterOp,
        MoEExpertsOp,
        MoECombineOp,
    ],
)

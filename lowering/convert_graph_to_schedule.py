"""convert-tessera-graph-to-schedule: Graph-IR's stateless @forward -> the @prefill and @decode programs.

Options (tessera-opt `convert-tessera-graph-to-schedule{mode=both max-seq-len=4096 ssm-state-dtype=f32}`):
    mode             both | prefill | decode: which programs to build
    max-seq-len      KV-cache capacity per attention layer (positions, 1 to 2^31-1)
    ssm-state-dtype  f32 | bf16: element type of each Mamba layer's ssm_state (bf16 halves state memory)
    kv-cache-dtype   f32 | bf16: element type of each attention layer's K and V caches
    chunk-size       the SSD scan's chunk length in prefill (absent: the mixer's own chunk_size)
    activation-dtype f32 | bf16: element type of the buffers that feed a projection (norm outputs, the
                     gated Mamba output, attention's output, ReLU² hidden states); the residual stream,
                     the Mamba internals and the logits stay f32

What the conversion decides (and writes down as IR):
- State: conv_state [C, K-1] and ssm_state [H, P, N] per Mamba layer, k_cache and v_cache
  [max_seq_len, Hkv, hd] per attention layer, declared once with `tessera.schedule.state`.
- MoE is router logits -> moe_router -> moe_experts (expert-major: each expert's weights read once per
  call) -> moe_combine (the routing weights, into the residual stream), beside the shared expert.
- The Mamba mixer is in_proj -> conv_silu -> ssd_scan (prefill; chunk_size from the op) or ssd_step
  (decode) -> gated_rmsnorm -> out_proj; attention is one fused QKV projection (a weight concatenated
  from q, k and v at load), kv_append, attention over the cache, o_proj.
- Fusion: every residual `add(h, block(rmsnorm(h)))` becomes the block's last projection accumulating
  into h in place (epilogue "accumulate"); ReLU² is the up projection's epilogue ("relu2"); the Mamba gate
  is applied inside gated_rmsnorm. With f32 activations an RMSNorm read by one projection (Mamba in_proj,
  the QKV projection, the MLP's up projection, lm_head) is folded into it: its scale multiplies the
  weight's columns at load (`column_scale`), and `rms_scale` computes the per-token 1/rms that the
  projection applies to its rows (`row_scale`) — the normalised activations are never written. An MoE
  layer reads its input three times, so its norm stays a step, as every norm does with bf16 activations
  (they are rounded to bf16 once, where they are normalised). A graph whose adds do not have the residual
  shape is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.builder import Builder, InsertPoint
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    TensorType,
    UnitAttr,
    bf16,
    f32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from tessera.dialects import graph, nemotron, schedule
from tessera.errors import TesseraError

PASS_NAME = "convert-tessera-graph-to-schedule"
MODES = ("both", "prefill", "decode")
STATE_DTYPES = ("f32", "bf16")
# Positions and chunk lengths are i32 in the GPU kernels; a state's bytes must fit int64 (memref sizes,
# the memory report).
MAX_POSITIONS = 2**31 - 1
MAX_STATE_BYTES = 2**63 - 1


class ScheduleConversionError(TesseraError):
    """A Graph-IR module that has no schedule (an op or a dataflow shape the conversion does not know)."""


def _i64(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)


def _f64(value: float) -> FloatAttr:
    return FloatAttr(value, Float64Type())


def _int(attr: Attribute) -> int:
    assert isinstance(attr, IntegerAttr)
    return int(attr.value.data)


def buffer_type(features: int, element: Attribute = f32) -> MemRefType:
    return MemRefType(element, [DYNAMIC_INDEX, features])


@dataclass(frozen=True)
class _Input:
    """What a block reads: a materialised buffer, or (folded norm) the residual stream, its per-token
    1/rms and the name of the norm weight that scales the first projection's columns."""

    x: SSAValue
    rstd: SSAValue | None = None
    norm_weight: str | None = None


_FOLDABLE_CONSUMERS = (nemotron.Mamba2MixerOp, nemotron.AttnGQAOp, nemotron.MLPReLU2Op, graph.LMHeadOp)


class _ProgramBuilder:
    """Builds one program (prefill or decode) by walking @forward's ops in order."""

    def __init__(
        self,
        mode: str,
        states: dict[str, schedule.StateOp],
        forward: func.FuncOp,
        chunk_size: int | None,
        activation: Attribute,
    ) -> None:
        self.mode = mode
        self.chunk_size = chunk_size
        self.activation = activation  # element type of buffers that feed a projection
        self.states = states
        self.forward = forward
        self.block = Block(arg_types=[MemRefType(i64, [DYNAMIC_INDEX])])
        self.builder = Builder(InsertPoint.at_end(self.block))
        self.values: dict[SSAValue, SSAValue] = {}  # graph tensor -> schedule buffer
        self.folded: dict[SSAValue, _Input] = {}  # graph rmsnorm result -> its folded form
        self.weights: dict[str, SSAValue] = {}
        self.graph_weights: dict[SSAValue, str] = {}

    # --- small constructors ------------------------------------------------------------------
    def insert(self, op: Operation) -> Operation:
        self.builder.insert(op)
        return op

    def alloc(self, features: int, element: Attribute = f32) -> SSAValue:
        return self.insert(schedule.AllocOp(result_types=[buffer_type(features, element)])).results[0]

    def weight(
        self, name: str, shape: Sequence[int], parts: Sequence[str] = (), column_scale: str | None = None
    ) -> SSAValue:
        if name not in self.weights:
            props: dict[str, Attribute] = {"name": StringAttr(name)}
            if parts:
                props["parts"] = ArrayAttr([StringAttr(p) for p in parts])
            if column_scale is not None:
                props["column_scale"] = StringAttr(column_scale)
            op = schedule.WeightOp(properties=props, result_types=[MemRefType(f32, list(shape))])
            self.weights[name] = self.insert(op).results[0]
        return self.weights[name]

    def optional_weight(self, value: SSAValue | None) -> SSAValue | None:
        """The schedule weight of a graph weight operand that may be absent (a bias)."""
        return None if value is None else self.graph_weight(value)

    def graph_weight(self, value: SSAValue) -> SSAValue:
        name = self.graph_weights[value]
        assert isinstance(value.type, TensorType)
        return self.weight(name, value.type.get_shape())

    def state(self, name: str) -> SSAValue:
        state = self.states[name]
        return self.insert(
            schedule.StateRefOp(properties={"state": SymbolRefAttr(name)}, result_types=[state.type])
        ).results[0]

    def step(
        self,
        op_type: type[schedule.StepOp],
        ins: Sequence[SSAValue | None],
        outs: Sequence[SSAValue],
        **props: Attribute,
    ) -> None:
        present = [value for value in ins if value is not None]
        self.insert(op_type(operands=[present, list(outs)], properties=props))

    def matmul(self, x: SSAValue, weight: SSAValue, out: SSAValue, epilogue: str, bias: SSAValue | None = None) -> None:
        self.step(schedule.MatmulOp, [x, weight, bias], [out], epilogue=StringAttr(epilogue))

    def project(
        self,
        source: _Input,
        weight: tuple[str, Sequence[int]],
        out: SSAValue,
        epilogue: str,
        bias: SSAValue | None = None,
        parts: Sequence[str] = (),
    ) -> None:
        """A block's first projection, of a materialised input or of a folded norm."""
        name, shape = weight
        if source.rstd is None:
            self.matmul(source.x, self.weight(name, shape, parts), out, epilogue, bias)
            return
        scaled = self.weight(name, shape, parts, column_scale=source.norm_weight)
        ins = [source.x, scaled, bias, source.rstd]
        self.step(schedule.MatmulOp, ins, [out], epilogue=StringAttr(epilogue), row_scale=UnitAttr())

    def block_input(self, value: SSAValue) -> _Input:
        return self.folded.get(value) or _Input(self.values[value])

    def _weight_of(self, value: SSAValue) -> tuple[str, Sequence[int]]:
        return self.graph_weights[value], _shape(value)

    # --- the walk ---------------------------------------------------------------------------
    def build(self) -> func.FuncOp:
        residual_blocks = self._residual_blocks()
        logits_type: MemRefType | None = None
        for op in self.forward.body.block.ops:
            if isinstance(op, graph.WeightOp):
                self.graph_weights[op.result] = op.weight_name.data
            elif isinstance(op, graph.EmbeddingOp):
                table = self.graph_weight(op.table)
                assert table is not None
                h = self.alloc(_features(op.result))
                self.step(schedule.EmbeddingOp, [self.block.args[0], table], [h])
                self.values[op.result] = h
            elif isinstance(op, graph.RMSNormOp) and self._foldable(op):
                rstd = self.insert(schedule.AllocOp(result_types=[MemRefType(f32, [DYNAMIC_INDEX])])).results[0]
                self.step(schedule.RMSScaleOp, [self.values[op.x]], [rstd], epsilon=_f64(op.epsilon.value.data))
                self.folded[op.result] = _Input(self.values[op.x], rstd, self.graph_weights[op.weight])
            elif isinstance(op, graph.RMSNormOp):
                out = self.alloc(_features(op.result), self.activation)
                self.step(
                    schedule.RMSNormOp,
                    [self.values[op.x], self.graph_weight(op.weight)],
                    [out],
                    epsilon=_f64(op.epsilon.value.data),
                )
                self.values[op.result] = out
            elif isinstance(op, graph.AddOp):
                if op not in residual_blocks:
                    raise ScheduleConversionError(
                        f"{op.name}: only residual adds h + block(rmsnorm(h)) have a schedule (fused into the "
                        "block's last projection)"
                    )
                residual = self.values[op.lhs]
                self._block(residual_blocks[op], residual)
                self.values[op.result] = residual  # accumulated in place
            elif isinstance(op, graph.LMHeadOp):
                logits_type = buffer_type(_features(op.result))
                logits = self.alloc(_features(op.result))
                self.project(self.block_input(op.x), self._weight_of(op.weight), logits, "store")
                self.insert(func.ReturnOp(logits))
            elif isinstance(op, func.ReturnOp):
                continue
            elif isinstance(op, (nemotron.Mamba2MixerOp, nemotron.AttnGQAOp, nemotron.MLPReLU2Op, nemotron.MoEOp)):
                continue  # emitted at the residual add that consumes it
            else:
                raise ScheduleConversionError(f"{op.name}: no schedule for this op")
        if logits_type is None:
            raise ScheduleConversionError("@forward has no tessera.graph.lm_head: nothing to return")
        return func.FuncOp(self.mode, ((self.block.args[0].type,), (logits_type,)), Region(self.block))

    def _foldable(self, norm: graph.RMSNormOp) -> bool:
        """f32 activations and a single reader whose first projection is the norm's only use."""
        if self.activation != f32 or not norm.result.has_one_use():
            return False
        reader = next(iter(norm.result.uses)).operation
        return isinstance(reader, _FOLDABLE_CONSUMERS)

    def _residual_blocks(self) -> dict[graph.AddOp, Operation]:
        """Each add whose rhs is a block fed by rmsnorm(lhs): the fusable residual."""
        found: dict[graph.AddOp, Operation] = {}
        for op in self.forward.body.block.ops:
            if not isinstance(op, graph.AddOp):
                continue
            block = op.rhs.owner
            norm = block.operands[0].owner if isinstance(block, Operation) and block.operands else None
            if isinstance(norm, graph.RMSNormOp) and norm.x == op.lhs and op.rhs.has_one_use():
                found[op] = block  # type: ignore[assignment]
        return found

    def _block(self, block: Operation, residual: SSAValue) -> None:
        source = self.block_input(block.operands[0])
        if isinstance(block, nemotron.Mamba2MixerOp):
            self._mamba(block, source, residual)
        elif isinstance(block, nemotron.AttnGQAOp):
            self._attention(block, source, residual)
        elif isinstance(block, nemotron.MLPReLU2Op):
            hidden = self.alloc(_shape(block.up_weight)[0], self.activation)
            self.project(source, self._weight_of(block.up_weight), hidden, "relu2", self.optional_weight(block.up_bias))
            self.matmul(
                hidden,
                self.graph_weight(block.down_weight),
                residual,
                "accumulate",
                self.optional_weight(block.down_bias),
            )
        elif isinstance(block, nemotron.MoEOp):
            self._moe(block, source.x, residual)
        else:
            raise ScheduleConversionError(f"{block.name}: no schedule for this block")

    def _mamba(self, op: nemotron.Mamba2MixerOp, source: _Input, residual: SSAValue) -> None:
        layer = _int(op.layer)
        dims = {
            name: getattr(op, name)
            for name in ("num_heads", "head_dim", "n_groups", "state_size", "conv_kernel", "chunk_size")
        }
        props: dict[str, Attribute] = {**dims, "epsilon": op.epsilon, "time_step_min": op.time_step_min}
        if self.chunk_size is not None:
            props["chunk_size"] = _i64(self.chunk_size)
        heads, head_dim = _int(op.num_heads), _int(op.head_dim)
        inner = heads * head_dim
        channels = inner + 2 * _int(op.n_groups) * _int(op.state_size)
        w, maybe = self.graph_weight, self.optional_weight
        zxbcdt = self.alloc(_shape(op.in_proj_weight)[0])
        self.project(source, self._weight_of(op.in_proj_weight), zxbcdt, "store", maybe(op.in_proj_bias))
        conv_state = self.state(f"layers.{layer}.conv_state")
        xbc = self.alloc(channels)
        self.step(schedule.ConvSiluOp, [zxbcdt, w(op.conv_weight), maybe(op.conv_bias)], [conv_state, xbc], **props)
        ssm_state = self.state(f"layers.{layer}.ssm_state")
        y = self.alloc(inner)
        scan = schedule.SSDScanOp if self.mode == "prefill" else schedule.SSDStepOp
        self.step(scan, [zxbcdt, xbc, w(op.dt_bias), w(op.A_log), w(op.D)], [ssm_state, y], **props)
        gated = self.alloc(inner, self.activation)
        self.step(schedule.GatedRMSNormOp, [zxbcdt, y, w(op.norm_weight)], [gated], **props)
        self.matmul(gated, w(op.out_proj_weight), residual, "accumulate", maybe(op.out_proj_bias))

    def _attention(self, op: nemotron.AttnGQAOp, source: _Input, residual: SSAValue) -> None:
        layer = _int(op.layer)
        props: dict[str, Attribute] = {
            "num_heads": op.num_heads,
            "num_kv_heads": op.num_kv_heads,
            "head_dim": op.head_dim,
        }
        names = [self.graph_weights[v] for v in (op.q_weight, op.k_weight, op.v_weight)]
        rows = sum(_shape(v)[0] for v in (op.q_weight, op.k_weight, op.v_weight))
        qkv = self.alloc(rows)
        qkv_weight = (f"layers.{layer}.attn_gqa.qkv_proj.weight", (rows, _shape(op.q_weight)[1]))
        self.project(source, qkv_weight, qkv, "store", parts=names)
        k_cache, v_cache = self.state(f"layers.{layer}.k_cache"), self.state(f"layers.{layer}.v_cache")
        self.step(schedule.KVAppendOp, [qkv], [k_cache, v_cache], **props)
        out = self.alloc(_shape(op.o_weight)[1], self.activation)
        self.step(schedule.AttentionOp, [qkv, k_cache, v_cache], [out], **props)
        self.matmul(out, self.graph_weight(op.o_weight), residual, "accumulate")

    def _moe(self, op: nemotron.MoEOp, x: SSAValue, residual: SSAValue) -> None:
        w = self.graph_weight
        experts, top_k = _int(op.num_experts), _int(op.top_k)
        counts: dict[str, Attribute] = {"num_experts": op.num_experts, "top_k": op.top_k}
        logits = self.alloc(experts)
        self.matmul(x, w(op.router_weight), logits, "store")
        ids, weights = self.alloc(top_k, i64), self.alloc(top_k)
        self.step(
            schedule.MoERouterOp,
            [logits, w(op.router_bias)],
            [ids, weights],
            **counts,
            n_group=op.n_group,
            topk_group=op.topk_group,
            norm_topk_prob=_i64(1 if op.norm_topk_prob.value.data else 0),
            routed_scaling_factor=op.routed_scaling_factor,
        )
        experts_in = x
        if op.latent_in_weight is not None:
            experts_in = self.alloc(_shape(op.latent_in_weight)[0])
            self.matmul(x, w(op.latent_in_weight), experts_in, "store")
        latent = _shape(op.experts_up)[2]
        contrib = self.alloc(top_k * latent)
        self.step(schedule.MoEExpertsOp, [experts_in, ids, w(op.experts_up), w(op.experts_down)], [contrib], **counts)
        routed_out = residual if op.latent_out_weight is None else self.alloc(_shape(op.latent_out_weight)[1])
        epilogue = "accumulate" if op.latent_out_weight is None else "store"
        self.step(schedule.MoECombineOp, [contrib, weights], [routed_out], **counts, epilogue=StringAttr(epilogue))
        if op.latent_out_weight is not None:
            self.matmul(routed_out, w(op.latent_out_weight), residual, "accumulate")
        shared = self.alloc(_shape(op.shared_up_weight)[0], self.activation)
        self.matmul(x, w(op.shared_up_weight), shared, "relu2")
        self.matmul(shared, w(op.shared_down_weight), residual, "accumulate")


def _shape(value: SSAValue | None) -> tuple[int, ...]:
    assert value is not None and isinstance(value.type, TensorType)
    return tuple(value.type.get_shape())


def _features(value: SSAValue) -> int:
    return _shape(value)[1]


def declare_states(
    forward: func.FuncOp, max_seq_len: int, ssm_state_dtype: str, kv_cache_dtype: str = "f32"
) -> list[schedule.StateOp]:
    """The state every program shares: per Mamba layer conv/SSM state, per attention layer the KV cache."""
    ssm_element = bf16 if ssm_state_dtype == "bf16" else f32
    kv_element = bf16 if kv_cache_dtype == "bf16" else f32
    states: list[schedule.StateOp] = []

    def declare(name: str, kind: str, layer: int, shape: Sequence[int], element: Attribute = f32) -> None:
        nbytes = math.prod(shape) * (2 if element == bf16 else 4)
        if nbytes > MAX_STATE_BYTES:
            raise ScheduleConversionError(
                f"{PASS_NAME}: state {name} of shape {list(shape)} is {nbytes} bytes, beyond int64"
            )
        props = {
            "sym_name": StringAttr(name),
            "type": MemRefType(element, list(shape)),
            "kind": StringAttr(kind),
            "layer": _i64(layer),
        }
        states.append(schedule.StateOp(properties=props))

    for op in forward.walk():
        if isinstance(op, nemotron.Mamba2MixerOp):
            layer = _int(op.layer)
            heads, head_dim, groups, size = (
                _int(op.num_heads),
                _int(op.head_dim),
                _int(op.n_groups),
                _int(op.state_size),
            )
            channels = heads * head_dim + 2 * groups * size
            declare(f"layers.{layer}.conv_state", "conv_state", layer, (channels, _int(op.conv_kernel) - 1))
            declare(f"layers.{layer}.ssm_state", "ssm_state", layer, (heads, head_dim, size), ssm_element)
        elif isinstance(op, nemotron.AttnGQAOp):
            layer = _int(op.layer)
            shape = (max_seq_len, _int(op.num_kv_heads), _int(op.head_dim))
            declare(f"layers.{layer}.k_cache", "k_cache", layer, shape, kv_element)
            declare(f"layers.{layer}.v_cache", "v_cache", layer, shape, kv_element)
    return states


def convert_graph_to_schedule(
    module: ModuleOp,
    mode: str = "both",
    max_seq_len: int = 4096,
    ssm_state_dtype: str = "f32",
    chunk_size: int | None = None,
    activation_dtype: str = "f32",
    kv_cache_dtype: str = "f32",
) -> ModuleOp:
    """A new Schedule-IR module for the Graph-IR `module` (which is left untouched)."""
    check_options(mode, max_seq_len, ssm_state_dtype, chunk_size, activation_dtype, kv_cache_dtype)
    activation = bf16 if activation_dtype == "bf16" else f32
    forward = next((op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == "forward"), None)
    if forward is None:
        raise ScheduleConversionError("the Graph-IR module has no func.func @forward")
    states = declare_states(forward, max_seq_len, ssm_state_dtype, kv_cache_dtype)
    by_name = {state.sym_name.data: state for state in states}
    programs = [
        _ProgramBuilder(m, by_name, forward, chunk_size, activation).build()
        for m in ("prefill", "decode")
        if mode in (m, "both")
    ]
    result = ModuleOp([*states, *programs])
    result.attributes.update(module.attributes)
    result.verify()
    return result


def check_options(
    mode: str,
    max_seq_len: int,
    ssm_state_dtype: str,
    chunk_size: int | None,
    activation_dtype: str,
    kv_cache_dtype: str,
) -> None:
    """Refuse, in one line naming the pass and the option, an option the conversion cannot build with."""
    choices = (
        ("mode", mode, MODES),
        ("ssm-state-dtype", ssm_state_dtype, STATE_DTYPES),
        ("activation-dtype", activation_dtype, STATE_DTYPES),
        ("kv-cache-dtype", kv_cache_dtype, STATE_DTYPES),
    )
    for option, value, known in choices:
        if value not in known:
            raise ScheduleConversionError(
                f"{PASS_NAME}: option '{option}' must be one of {', '.join(known)}, got {value!r}"
            )
    for option, number in (("max-seq-len", max_seq_len), ("chunk-size", chunk_size)):
        if number is None and option == "chunk-size":
            continue
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_POSITIONS:
            raise ScheduleConversionError(
                f"{PASS_NAME}: option '{option}' must be an integer in [1, {MAX_POSITIONS}], got {number!r}"
            )


@dataclass(frozen=True)
class ConvertTesseraGraphToSchedulePass(ModulePass):
    name = PASS_NAME

    mode: str = "both"
    max_seq_len: int = 4096
    ssm_state_dtype: str = "f32"
    chunk_size: int | None = None
    activation_dtype: str = "f32"
    kv_cache_dtype: str = "f32"

    def __post_init__(self) -> None:
        check_options(*self._options())  # when the pipeline is built, before any input is read

    def _options(self) -> tuple[str, int, str, int | None, str, str]:
        return (
            self.mode,
            self.max_seq_len,
            self.ssm_state_dtype,
            self.chunk_size,
            self.activation_dtype,
            self.kv_cache_dtype,
        )

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        converted = convert_graph_to_schedule(op, *self._options())
        for old in list(op.ops):
            old.detach()
            old.erase()
        for new in list(converted.ops):
            new.detach()
            op.body.block.add_op(new)

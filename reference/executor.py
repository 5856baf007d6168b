"""ReferenceExecutor: runs the @forward function of a Graph-IR module in numpy, on xDSL's interpreter.

The graph is stateless (token ids -> logits); the executor adds what prefill and decode need, keyed by
each block's `layer` attribute: conv_state and ssm_state for Mamba layers, a KV cache for attention
layers. `prefill` runs the Mamba mixers with the chunked SSD scan and may be called again to continue
the same sequence (chunked prefill); `decode` runs one token with the single-step recurrence. The caller
picks the mode, never the sequence length: a one-token prefill still takes the chunked scan.

Interpretation is xDSL's `Interpreter` with one `InterpreterFunctions` class per dialect
(`GraphFunctions`, `NemotronFunctions`) next to xDSL's own `FuncFunctions`; the block implementations
carry the mode and the per-layer state as fields, which the executor sets before each call.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.interpreter import Interpreter, InterpreterFunctions, PythonValues, impl, register_impls
from xdsl.interpreters.func import FuncFunctions
from xdsl.ir import SSAValue
from xdsl.utils.exceptions import InterpretationError

from tessera.dialects import graph, nemotron
from tessera.errors import TesseraError
from tessera.reference.attention import AttentionParams, KVCache, attention
from tessera.reference.common import embedding, lm_head, mlp_relu2, rmsnorm
from tessera.reference.mamba2 import Mamba2Params, Mamba2State, Mamba2Weights, mamba2_decode, mamba2_prefill
from tessera.reference.moe import MoEParams, MoEWeights, moe


class ExecutionError(TesseraError):
    """A Graph-IR module the reference executor cannot run with the weights or inputs given."""


@dataclass
class ExecutorState:
    """Everything decode needs from the past, keyed by layer: Mamba conv/SSM states and KV caches."""

    position: int = 0  # tokens consumed so far
    mamba: dict[int, Mamba2State] = field(default_factory=dict)
    kv: dict[int, KVCache] = field(default_factory=dict)


def _int(attr: Any) -> int:
    return int(attr.value.data)


def _float(attr: Any) -> float:
    return float(attr.value.data)


def _get(interpreter: Interpreter, value: SSAValue | None) -> Any:
    """The Python value of an (optional) operand; None where the operand is absent."""
    return None if value is None else interpreter.get_values((value,))[0]


@register_impls
@dataclass
class GraphFunctions(InterpreterFunctions):
    """tessera.graph: weights by name (resolved and checked once, up front), embedding, norm, add, lm_head."""

    weights: dict[str, np.ndarray] = field(default_factory=dict)

    @impl(graph.WeightOp)
    def run_weight(self, interpreter: Interpreter, op: graph.WeightOp, args: PythonValues) -> PythonValues:
        return (self.weights[op.weight_name.data],)

    @impl(graph.EmbeddingOp)
    def run_embedding(self, interpreter: Interpreter, op: graph.EmbeddingOp, args: PythonValues) -> PythonValues:
        ids, table = args
        try:
            return (embedding(ids, table),)
        except ValueError as exc:
            raise ExecutionError(f"{op.name}: {exc}") from None

    @impl(graph.RMSNormOp)
    def run_rmsnorm(self, interpreter: Interpreter, op: graph.RMSNormOp, args: PythonValues) -> PythonValues:
        return (rmsnorm(args[0], args[1], op.epsilon.value.data),)

    @impl(graph.AddOp)
    def run_add(self, interpreter: Interpreter, op: graph.AddOp, args: PythonValues) -> PythonValues:
        return (args[0] + args[1],)

    @impl(graph.LMHeadOp)
    def run_lm_head(self, interpreter: Interpreter, op: graph.LMHeadOp, args: PythonValues) -> PythonValues:
        return (lm_head(args[0], args[1]),)


@register_impls
@dataclass
class NemotronFunctions(InterpreterFunctions):
    """nemotron blocks; `decode` and `state` are set by the executor before each call of @forward."""

    decode: bool = False
    state: ExecutorState = field(default_factory=ExecutorState)

    @impl(nemotron.Mamba2MixerOp)
    def run_mamba2_mixer(
        self, interpreter: Interpreter, op: nemotron.Mamba2MixerOp, args: PythonValues
    ) -> PythonValues:
        weights = Mamba2Weights(
            in_proj_weight=_get(interpreter, op.in_proj_weight),
            in_proj_bias=_get(interpreter, op.in_proj_bias),
            conv_weight=_get(interpreter, op.conv_weight),
            conv_bias=_get(interpreter, op.conv_bias),
            dt_bias=_get(interpreter, op.dt_bias),
            A_log=_get(interpreter, op.A_log),
            D=_get(interpreter, op.D),
            norm_weight=_get(interpreter, op.norm_weight),
            out_proj_weight=_get(interpreter, op.out_proj_weight),
            out_proj_bias=_get(interpreter, op.out_proj_bias),
        )
        params = Mamba2Params(
            num_heads=_int(op.num_heads),
            head_dim=_int(op.head_dim),
            state_size=_int(op.state_size),
            n_groups=_int(op.n_groups),
            conv_kernel=_int(op.conv_kernel),
            chunk_size=_int(op.chunk_size),
            epsilon=_float(op.epsilon),
            time_step_min=_float(op.time_step_min),
        )
        layer = _int(op.layer)
        state = self.state.mamba.get(layer) or Mamba2State.zeros(params)
        step = mamba2_decode if self.decode else mamba2_prefill
        out, self.state.mamba[layer] = step(args[0], weights, params, state)
        return (out,)

    @impl(nemotron.AttnGQAOp)
    def run_attn_gqa(self, interpreter: Interpreter, op: nemotron.AttnGQAOp, args: PythonValues) -> PythonValues:
        params = AttentionParams(_int(op.num_heads), _int(op.num_kv_heads), _int(op.head_dim))
        cache = self.state.kv.setdefault(_int(op.layer), KVCache())
        q, k, v, o = (_get(interpreter, w) for w in (op.q_weight, op.k_weight, op.v_weight, op.o_weight))
        return (attention(args[0], q, k, v, o, params, cache),)

    @impl(nemotron.MLPReLU2Op)
    def run_mlp_relu2(self, interpreter: Interpreter, op: nemotron.MLPReLU2Op, args: PythonValues) -> PythonValues:
        up, down, up_bias, down_bias = (
            _get(interpreter, w) for w in (op.up_weight, op.down_weight, op.up_bias, op.down_bias)
        )
        return (mlp_relu2(args[0], up, down, up_bias, down_bias),)

    @impl(nemotron.MoEOp)
    def run_moe(self, interpreter: Interpreter, op: nemotron.MoEOp, args: PythonValues) -> PythonValues:
        weights = MoEWeights(
            router_weight=_get(interpreter, op.router_weight),
            router_bias=_get(interpreter, op.router_bias),
            experts_up=_get(interpreter, op.experts_up),
            experts_down=_get(interpreter, op.experts_down),
            shared_up_weight=_get(interpreter, op.shared_up_weight),
            shared_down_weight=_get(interpreter, op.shared_down_weight),
            latent_in_weight=_get(interpreter, op.latent_in_weight),
            latent_out_weight=_get(interpreter, op.latent_out_weight),
        )
        params = MoEParams(
            num_experts=_int(op.num_experts),
            top_k=_int(op.top_k),
            n_group=_int(op.n_group),
            topk_group=_int(op.topk_group),
            norm_topk_prob=bool(op.norm_topk_prob.value.data),
            routed_scaling_factor=_float(op.routed_scaling_factor),
        )
        return (moe(args[0], weights, params),)


# Every op @forward may hold; anything else is refused when the executor is built, not mid-run.
_IMPLEMENTED = (
    func.ReturnOp,
    graph.WeightOp,
    graph.EmbeddingOp,
    graph.RMSNormOp,
    graph.AddOp,
    graph.LMHeadOp,
    nemotron.Mamba2MixerOp,
    nemotron.AttnGQAOp,
    nemotron.MLPReLU2Op,
    nemotron.MoEOp,
)


class ReferenceExecutor:
    """Interprets a tessera.graph module with `weights` (Tessera layout names), carrying decode state.

    prefill(ids) -> [T, vocab] logits (float32), continuing the current sequence; decode(id) -> [vocab];
    generate(prompt, n) -> n greedy tokens; reset(); save_state() / restore_state(state).
    """

    def __init__(self, module: ModuleOp, weights: Mapping[str, np.ndarray]) -> None:
        forward = self._find_forward(module)
        self._graph = GraphFunctions(self._resolve_weights(forward, weights))
        self._blocks = NemotronFunctions()
        self._interpreter = Interpreter(module)
        self._interpreter.register_implementations(FuncFunctions())
        self._interpreter.register_implementations(self._graph)
        self._interpreter.register_implementations(self._blocks)
        self.state = ExecutorState()

    # --- public API --------------------------------------------------------------------------
    def prefill(self, input_ids: Sequence[int]) -> np.ndarray:
        """Logits [T, vocab] for every position of `input_ids`, continuing the current sequence."""
        if len(input_ids) == 0:
            raise ExecutionError("prefill: empty prompt")
        return self._run(input_ids, decode=False)

    def decode(self, token_id: int) -> np.ndarray:
        """Logits [vocab] after appending one token, by the single-step recurrence."""
        return self._run([token_id], decode=True)[0]

    def generate(self, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """Greedy: prefill the prompt, then decode one token at a time (ties: the lowest token id)."""
        logits = self.prefill(prompt_ids)[-1]
        tokens: list[int] = []
        while len(tokens) < max_new_tokens:
            tokens.append(int(np.argmax(logits)))
            if len(tokens) < max_new_tokens:
                logits = self.decode(tokens[-1])
        return tokens

    def reset(self) -> None:
        self.state = ExecutorState()

    def save_state(self) -> ExecutorState:
        return copy.deepcopy(self.state)

    def restore_state(self, state: ExecutorState) -> None:
        self.state = copy.deepcopy(state)

    # --- interpretation ----------------------------------------------------------------------
    @staticmethod
    def _find_forward(module: ModuleOp) -> func.FuncOp:
        for op in module.ops:
            if isinstance(op, func.FuncOp) and op.sym_name.data == "forward":
                for inner in op.walk():
                    if inner is not op and not isinstance(inner, _IMPLEMENTED):
                        raise ExecutionError(f"{inner.name}: the reference executor has no implementation of this op")
                return op
        raise ExecutionError("module has no func.func @forward")

    @staticmethod
    def _resolve_weights(forward: func.FuncOp, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every weight the graph names, present and of the shape its op declares."""
        resolved: dict[str, np.ndarray] = {}
        for op in forward.walk():
            if not isinstance(op, graph.WeightOp):
                continue
            name = op.weight_name.data
            if name not in weights:
                raise ExecutionError(f"weight '{name}' is missing")
            array = np.asarray(weights[name])
            result_type = op.result.type
            expected = tuple(result_type.get_shape()) if isinstance(result_type, TensorType) else array.shape
            if array.shape != expected:
                raise ExecutionError(
                    f"weight '{name}' has shape {list(array.shape)}, the graph expects {list(expected)}"
                )
            resolved[name] = array
        return resolved

    def _run(self, input_ids: Sequence[int], decode: bool) -> np.ndarray:
        self._blocks.decode = decode
        self._blocks.state = self.state
        try:
            (logits,) = self._interpreter.call_op("forward", (np.asarray(input_ids, np.int64),))
        except TesseraError as exc:
            # xDSL appends the whole module to the error as a note; the message alone names the op.
            exc.__notes__ = []
            raise
        except InterpretationError as exc:
            raise ExecutionError(f"@forward: {exc}") from None
        self.state.position += len(input_ids)
        return np.asarray(logits, np.float32)

"""ReferenceExecutor: runs the @forward function of a Graph-IR module op by op, in numpy.

The graph is stateless (token ids -> logits); the executor adds what prefill and decode need, keyed by
each block's `layer` attribute: conv_state and ssm_state for Mamba layers, a KV cache for attention
layers. `prefill` runs the Mamba mixers with the chunked SSD scan and may be called again to continue
the same sequence (chunked prefill); `decode` runs one token with the single-step recurrence.

A plain walk over the function body with one handler per op name: the interpreter needs a mode
(prefill/decode) and per-layer state next to each op, which a dispatch table states most directly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue

from tessera.errors import TesseraError
from tessera.reference.attention import AttentionParams, KVCache, attention
from tessera.reference.common import mlp_relu2, rmsnorm
from tessera.reference.mamba2 import Mamba2Params, Mamba2State, Mamba2Weights, mamba2_decode, mamba2_prefill
from tessera.reference.moe import MoEParams, MoEWeights, moe


class ExecutionError(TesseraError):
    """A Graph-IR module the reference executor cannot run with the weights given."""


@dataclass
class ExecutorState:
    """Everything decode needs from the past: per-layer Mamba states and KV caches, and the position."""

    position: int = 0
    mamba: dict[int, Mamba2State] = field(default_factory=dict)
    kv: dict[int, KVCache] = field(default_factory=dict)


def _attribute(op: Operation, name: str) -> Any:
    attr = op.properties.get(name)
    if attr is None:
        attr = op.attributes.get(name)
    if attr is None:
        raise ExecutionError(f"{op.name}: attribute '{name}' missing")
    # IntegerAttr / FloatAttr hold .value.data; StringAttr holds .data (booleans are i1 integers).
    value = getattr(attr, "value", attr)
    return getattr(value, "data", value)


class ReferenceExecutor:
    def __init__(self, module: ModuleOp, weights: Mapping[str, np.ndarray]) -> None:
        self._function = self._find_forward(module)
        self._weights = weights
        self._resolved: dict[str, np.ndarray] = {}
        self.state = ExecutorState()
        self._handlers: dict[str, Callable[[Operation, list[Any], bool], Any]] = {
            "tessera.graph.weight": self._weight,
            "tessera.graph.embedding": self._embedding,
            "tessera.graph.rmsnorm": lambda op, args, _: rmsnorm(args[0], args[1], float(_attribute(op, "epsilon"))),
            "tessera.graph.add": lambda op, args, _: args[0] + args[1],
            "tessera.graph.lm_head": lambda op, args, _: args[0] @ np.asarray(args[1], np.float64).T,
            "nemotron.mamba2_mixer": self._mamba2_mixer,
            "nemotron.attn_gqa": self._attn_gqa,
            "nemotron.mlp_relu2": self._mlp_relu2,
            "nemotron.moe": self._moe,
        }

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
        """Greedy: prefill the prompt, then decode one token at a time."""
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
                return op
        raise ExecutionError("module has no func.func @forward")

    def _run(self, input_ids: Sequence[int], decode: bool) -> np.ndarray:
        values: dict[SSAValue, Any] = {self._function.body.block.args[0]: np.asarray(input_ids, np.int64)}
        result: np.ndarray | None = None
        for op in self._function.body.block.ops:
            args = [values[operand] for operand in op.operands]
            if isinstance(op, func.ReturnOp):
                result = args[0]
                break
            handler = self._handlers.get(op.name)
            if handler is None:
                raise ExecutionError(f"{op.name}: the reference executor has no implementation of this op")
            values[op.results[0]] = handler(op, args, decode)
        if result is None:
            raise ExecutionError("@forward has no func.return")
        self.state.position += len(input_ids)
        return np.asarray(result, np.float32)

    def _weight(self, op: Operation, args: list[Any], decode: bool) -> np.ndarray:
        name = str(_attribute(op, "name"))
        cached = self._resolved.get(name)
        if cached is not None:
            return cached
        if name not in self._weights:
            raise ExecutionError(f"weight '{name}' is missing")
        array = np.asarray(self._weights[name])
        result_type = op.results[0].type
        expected = tuple(result_type.get_shape()) if isinstance(result_type, TensorType) else None
        if expected is not None and tuple(array.shape) != expected:
            raise ExecutionError(f"weight '{name}' has shape {list(array.shape)}, the graph expects {list(expected)}")
        self._resolved[name] = array
        return array

    def _embedding(self, op: Operation, args: list[Any], decode: bool) -> np.ndarray:
        ids, table = args
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise ExecutionError(f"token id outside the vocabulary [0, {table.shape[0]})")
        return np.asarray(table[ids], np.float64)

    @staticmethod
    def _operand(op: Operation, name: str, values: dict[SSAValue, Any]) -> Any:
        value = getattr(op, name)
        return None if value is None else values[value]

    def _named(self, op: Operation, args: list[Any], names: Sequence[str]) -> dict[str, Any]:
        values = dict(zip(op.operands, args, strict=True))
        return {name: self._operand(op, name, values) for name in names}

    def _mamba2_mixer(self, op: Operation, args: list[Any], decode: bool) -> np.ndarray:
        names = (
            "in_proj_weight", "conv_weight", "dt_bias", "A_log", "D", "norm_weight", "out_proj_weight",
            "in_proj_bias", "conv_bias", "out_proj_bias",
        )  # fmt: skip
        weights = Mamba2Weights(**self._named(op, args, names))
        params = Mamba2Params(
            num_heads=int(_attribute(op, "num_heads")),
            head_dim=int(_attribute(op, "head_dim")),
            state_size=int(_attribute(op, "state_size")),
            n_groups=int(_attribute(op, "n_groups")),
            conv_kernel=int(_attribute(op, "conv_kernel")),
            chunk_size=int(_attribute(op, "chunk_size")),
            epsilon=float(_attribute(op, "epsilon")),
            time_step_min=float(_attribute(op, "time_step_min")),
        )
        layer = int(_attribute(op, "layer"))
        state = self.state.mamba.get(layer) or Mamba2State.zeros(params)
        step = mamba2_decode if decode else mamba2_prefill
        out, self.state.mamba[layer] = step(args[0], weights, params, state)
        return out

    def _attn_gqa(self, op: Operation, args: list[Any], decode: bool) -> np.ndarray:
        w = self._named(op, args, ("q_weight", "k_weight", "v_weight", "o_weight"))
        params = AttentionParams(
            num_heads=int(_attribute(op, "num_heads")),
            num_kv_heads=int(_attribute(op, "num_kv_heads")),
            head_dim=int(_attribute(op, "head_dim")),
        )
        cache = self.state.kv.setdefault(int(_attribute(op, "layer")), KVCache())
        return attention(args[0], w["q_weight"], w["k_weight"], w["v_weight"], w["o_weight"], params, cache)

    def _mlp_relu2(self, op: Operation, args: list[Any], decode: bool) -> np.ndarray:
        w = self._named(op, args, ("up_weight", "down_weight", "up_bias", "down_bias"))
        return mlp_relu2(args[0], w["up_weight"], w["down_weight"], w["up_bias"], w["down_bias"])

    def _moe(self, op: Operation, args: list[Any], decode: bool) -> np.ndarray:
        names = (
            "router_weight", "router_bias", "experts_up", "experts_down", "shared_up_weight",
            "shared_down_weight", "latent_in_weight", "latent_out_weight",
        )  # fmt: skip
        weights = MoEWeights(**self._named(op, args, names))
        params = MoEParams(
            num_experts=int(_attribute(op, "num_experts")),
            top_k=int(_attribute(op, "top_k")),
            n_group=int(_attribute(op, "n_group")),
            topk_group=int(_attribute(op, "topk_group")),
            norm_topk_prob=bool(_attribute(op, "norm_topk_prob")),
            routed_scaling_factor=float(_attribute(op, "routed_scaling_factor")),
        )
        return moe(args[0], weights, params)

"""Weights drawn from a seed, for a config without a checkpoint: initialised like transformers' NemotronH
(_init_weights), every tensor from its own Philox stream (model/philox.py), so that any target — the host
here, a GPU's draw kernel there (kernels/draw.py) — draws the same bits in any order.

    init_of(spec, config)                   how one layout tensor is initialised (an Init)
    random_weights(config, seed, names)     float32 arrays by layout name (all, or those `names`)

Large tensors are Normal or Uniform: a pure function of (seed, stream, element index) through integer
operations and one float32 multiply, which a GPU reproduces exactly. The small per-channel ones (norms,
A_log, D, dt_bias, biases) are drawn here on the host on every target (dt_bias goes through exp and log).
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tessera.model import philox
from tessera.model.config import ModelConfig
from tessera.model.weights_layout import TensorSpec, model_tensors

# HF's initializer_range: Linears, embedding, router, experts and conv1d are normal(0, 0.02) in transformers 5.23.
INITIALIZER_RANGE = 0.02
# Elements drawn per numpy pass: a few int64 temporaries of this size stay in a core's L2 (measured fastest).
CHUNK = 1 << 14


@dataclass(frozen=True)
class Init:
    """One tensor's initialisation: "normal" (std `scale`), "uniform" (U(-scale, scale)), "ones", "zeros",
    "a_log" (log 1..H) or "dt_bias" (inverse softplus of a log-uniform dt)."""

    kind: str
    scale: float = 0.0

    @property
    def random_bits(self) -> bool:
        """Whether the values are a function of Philox bits alone (what a GPU draw kernel computes)."""
        return self.kind in ("normal", "uniform")


def init_of(spec: TensorSpec, config: ModelConfig) -> Init:
    leaf = spec.name.rsplit(".", 1)[-1]
    if spec.name.endswith("norm.weight") or leaf == "D":
        return Init("ones")
    if leaf == "A_log":
        return Init("a_log")
    if leaf == "dt_bias":
        return Init("dt_bias")
    if leaf in ("bias", "e_score_correction_bias"):
        return Init("zeros")
    if spec.name.endswith("mamba2_mixer.out_proj.weight"):
        # rescale_prenorm_residual (HF default True): kaiming-uniform, divided by sqrt(layers).
        return Init("uniform", 1.0 / math.sqrt(spec.shape[1]) / math.sqrt(config.num_hidden_layers))
    return Init("normal", INITIALIZER_RANGE)


def stream_of(name: str) -> int:
    """The Philox stream (counter word 2) of a layout tensor: its name's CRC-32."""
    return zlib.crc32(name.encode())


def draw(init: Init, name: str, shape: tuple[int, ...], seed: int, config: ModelConfig) -> np.ndarray:
    """The float32 tensor `name` of `shape`, initialised as `init` says, from `seed`."""
    if init.kind == "ones":
        return np.ones(shape, np.float32)
    if init.kind == "zeros":
        return np.zeros(shape, np.float32)
    if init.kind == "a_log":
        return np.log(np.arange(1, shape[0] + 1, dtype=np.float32))
    count = math.prod(shape)
    out = np.empty(count, np.float32)
    stream = stream_of(name)

    def fill(begin: int) -> None:
        indices = np.arange(begin, min(begin + CHUNK, count), dtype=np.int64)
        words = philox.element_words(indices, stream, seed)
        if init.kind == "normal":
            out[begin : begin + indices.size] = philox.normal_values(words, init.scale)
        elif init.kind == "uniform":
            out[begin : begin + indices.size] = philox.uniform_values(words, init.scale)
        else:
            assert init.kind == "dt_bias", init
            low, high = math.log(config.time_step_min), math.log(config.time_step_max)
            dt = np.maximum(np.exp(low + (high - low) * philox.unit_uniform(words)), config.time_step_floor)
            out[begin : begin + indices.size] = dt + np.log(-np.expm1(-dt))  # inverse softplus

    starts = range(0, count, CHUNK)
    if len(starts) == 1:
        fill(0)
    else:  # numpy's integer loops release the GIL: chunks in parallel on every core
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(fill, starts))
    return out.reshape(shape)


def random_weights(config: ModelConfig, seed: int, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Float32 weights by layout name drawn from `seed` (all of them, or those in `names`)."""
    wanted = None if names is None else set(names)
    return {
        spec.name: draw(init_of(spec, config), spec.name, spec.shape, seed, config)
        for spec in model_tensors(config)
        if wanted is None or spec.name in wanted
    }


@dataclass(frozen=True)
class SeededWeights:
    """A model's weights as their seed: drawn where they are used (a GPU session draws the large ones with
    its draw kernels and asks `arrays` for the rest)."""

    config: ModelConfig
    seed: int

    def arrays(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        return random_weights(self.config, self.seed, names)

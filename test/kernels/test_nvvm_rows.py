"""The streamed row kernels on Hopper at the Nano 12B's shapes (tiling/gpu_rows.py, lowering/simt_lanes.py
choose_row_runs): every global access of a row is one 16-byte vector load a lane (8 bytes for a bf16 store),
through ptxas with no spills. Their numerics, vector runs included, are test_rocdl_kernels.py's (hidden 256,
head_dim 128, groups of 128 channels); their bandwidth on an H200 is benchmarks/h100_rows.py's."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from conftest import NEEDS_MLIR
from tile_kernels import tile_kernel

from tessera.dialects.tile import plain_dict
from tessera.lowering.convert_tile_to_nvvm import emit_kernel
from tessera.lowering.nvvm import pipeline

pytestmark = NEEDS_MLIR

# kind: (the 12B's dims, the global accesses of its PTX: instruction -> count at least)
TWELVE_B: dict[str, tuple[dict[str, Any], dict[str, int]]] = {
    "rmsnorm": ({"hidden": 5120, "epsilon": 1e-5, "out_dtype": "bf16"}, {"ld.global.v4.b32": 2, "st.global.v4.b16": 1}),
    "rms_scale": ({"hidden": 5120, "epsilon": 1e-5}, {"ld.global.v4.b32": 1}),
    "embedding": ({"hidden": 5120, "vocab": 32768}, {"ld.global.v4.b32": 1, "st.global.v4.b32": 1}),
    "gated_rmsnorm": (
        {"num_heads": 128, "head_dim": 80, "n_groups": 8, "state_size": 128, "epsilon": 1e-5, "out_dtype": "bf16"},
        {"ld.global.v4.b32": 3, "st.global.v4.b16": 1},
    ),
    "kv_append": (
        {"num_heads": 40, "num_kv_heads": 8, "head_dim": 128, "max_seq_len": 8192, "cache_dtype": "bf16"},
        {"ld.global.v4.b32": 16, "st.global.v4.b16": 16},
    ),
}
SCALAR_ACCESSES = {"embedding": 1, "rms_scale": 1}  # the row's token id; the row's 1 / rms


@pytest.mark.parametrize("kind", list(TWELVE_B))
def test_row_accesses_are_16_byte_vectors(kind: str) -> None:
    if pipeline.find_ptxas() is None:
        pytest.skip("ptxas is not installed (CUDA's ptxas: ../shared/TOOLCHAIN.md)")
    dims, expected = TWELVE_B[kind]
    tiled = tile_kernel(kind, dims, "sm_90a", "bf16", name=kind)
    artifacts = pipeline.compile_kernels(emit_kernel(tiled).text, kind, sass=False)
    accesses = Counter(re.findall(r"\b(?:ld|st)\.global[.\w]*", artifacts.ptx))
    scalar = {access: count for access, count in accesses.items() if ".v" not in access}
    assert sum(scalar.values()) == SCALAR_ACCESSES.get(kind, 0), accesses
    assert all(accesses[access] >= count for access, count in expected.items()), accesses
    report = artifacts.cubin.kernels[kind]
    assert report.spill_stores == report.spill_loads == 0


# The 12B's decode GEMVs (tiling/gpu.py gemv_tiles): (n, k, epilogue, y_dtype) — in_proj, up_proj (relu2 into bf16),
# down_proj (K 20480), lm_head.
TWELVE_B_GEMVS = [(22656, 5120, "store", "f32"), (20480, 5120, "relu2", "bf16"), (5120, 20480, "accumulate", "f32"),
                  (131072, 5120, "store", "f32")]  # fmt: skip


@pytest.mark.parametrize(("n", "k", "epilogue", "y_dtype"), TWELVE_B_GEMVS)
def test_decode_gemv_streams_w_in_16_byte_vectors(n: int, k: int, epilogue: str, y_dtype: str) -> None:
    """A decode step's projection: each lane reads 16 bytes of each of its program's W rows and of x per step
    (no shared memory, no barrier), without spills; its scalar accesses are the epilogue's, one per column."""
    if pipeline.find_ptxas() is None:
        pytest.skip("ptxas is not installed (CUDA's ptxas: ../shared/TOOLCHAIN.md)")
    dims = {"n": n, "k": k, "epilogue": epilogue, "bias": 0, "x_dtype": "bf16", "y_dtype": y_dtype, "tokens": 1}
    tiled = tile_kernel("matmul", dims, "sm_90a", "bf16", name="gemv", grid=0)
    assert tiled.tiles is not None
    columns = int(plain_dict(tiled.tiles)["columns"])
    artifacts = pipeline.compile_kernels(emit_kernel(tiled).text, "gemv", sass=False)
    accesses = Counter(re.findall(r"\b(?:ld|st)\.global[.\w]*", artifacts.ptx))
    assert accesses["ld.global.v4.b32"] >= columns + 1, accesses  # W's rows and x, unrolled steps aside
    scalar = sum(count for access, count in accesses.items() if ".v" not in access)
    assert scalar == columns * (2 if epilogue == "accumulate" else 1), accesses
    report = artifacts.cubin.kernels["gemv"]
    assert report.spill_stores == report.spill_loads == report.shared_bytes == report.barriers == 0

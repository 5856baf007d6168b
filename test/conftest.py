"""Helpers the pytest files share: running a Tessera CLI, the one-line error contract, and the one seed
source every random test draws from.

Seeds: a test that takes the `seed` fixture (or `rng`, a numpy Generator on it; module-scoped fixtures take
`module_seed`) gets a seed derived from a base seed (TESSERA_TEST_SEED, default 0) and its own node id by a
stable hash, so a run is reproducible and tests do not share streams. `pytest --seeds N` runs every seeded
test for base seeds base .. base + N - 1 (ids seed0 .. seedN-1); a failing seeded test prints the line that
replays it alone: `TESSERA_TEST_SEED=<base + i> pytest '<its node id without seed i>'`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Compiled kernels are cached across the tests of a run (and across runs on one machine): identical
# kernels compile once, as they do for users. The cache's own behaviour is tested with private dirs.
os.environ.setdefault("TESSERA_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"tessera-test-cache-{os.getuid()}"))

HAS_MLIR = importlib.util.find_spec("mlir") is not None and importlib.util.find_spec("llvmlite") is not None
NEEDS_MLIR = pytest.mark.skipif(
    not HAS_MLIR, reason="the MLIR 22 / llvmlite toolchain is not installed (pip install -e '.[mlir]')"
)
# Every target that runs on this machine; compiled ones skip, saying why, where their toolchain is absent.
TARGETS = ["reference", pytest.param("x86", marks=NEEDS_MLIR)]


def run_tool(
    module: str, *args: object, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m tessera.tools.<module> ARGS` as a user would; with ok, insist it succeeds.
    env: variables set on top of this process's environment."""
    result = subprocess.run(
        [sys.executable, "-m", f"tessera.tools.{module}", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def compile_tiny_x86(tmp_path_factory: pytest.TempPathFactory, seed: int, max_seq_len: int) -> Path:
    """configs/nemotron_h_tiny.yaml (every layer kind, chunk 16, odd vocab 301) compiled for x86 with random
    weights drawn from `seed`, as tessera-compile does it: the artifact's directory."""
    out = tmp_path_factory.mktemp("tiny") / "out"
    tiny = Path(__file__).resolve().parent.parent / "configs" / "nemotron_h_tiny.yaml"
    run_tool("tessera_compile", tiny, "--target", "x86", "--max-seq-len", max_seq_len, "--seed", seed % 2**31,
             "-o", out, "-q")  # fmt: skip
    return out


def assert_one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """Bad input: a non-zero exit, no traceback, and exactly one stderr line holding every phrase."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


# --- seeds ------------------------------------------------------------------------------------------------

SEED_ENV = "TESSERA_TEST_SEED"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--seeds", type=int, default=1, metavar="N",
        help=f"run every seeded test for N seeds: base seeds ${SEED_ENV} (default 0) .. + N - 1",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("seeds") < 1:
        raise pytest.UsageError(f"--seeds {config.getoption('seeds')}: expected at least 1")
    base_seed()


def base_seed() -> int:
    """TESSERA_TEST_SEED, a non-negative integer; 0 where unset."""
    text = os.environ.get(SEED_ENV, "0")
    if not text.isdigit():
        raise pytest.UsageError(f"{SEED_ENV}={text!r}: expected a non-negative integer")
    return int(text)


def derive_seed(base: int, key: str) -> int:
    """A 63-bit seed from the base seed and a test's (or module's) id: sha256, not hash(), which Python salts
    per process."""
    return int.from_bytes(hashlib.sha256(f"{base}:{key}".encode()).digest()[:8], "little") >> 1


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """--seeds N: every test that depends on `seed_index` (through seed, rng or module_seed) runs N times. The
    parameter is module-scoped, so that module-scoped fixtures drawn from module_seed are drawn once per seed."""
    count = metafunc.config.getoption("seeds")
    if count > 1 and "seed_index" in metafunc.fixturenames:
        metafunc.parametrize("seed_index", range(count), ids=[f"seed{i}" for i in range(count)], scope="module")


@pytest.fixture(scope="module")
def seed_index() -> int:
    """Which seed of a --seeds sweep this is (0 without one); overridden by pytest_generate_tests."""
    return 0


def _replay(item: pytest.Item, index: int) -> tuple[int, str]:
    """The base seed of a seeded test and its node id without the sweep's parameter (its id in a run
    without --seeds): running that id with TESSERA_TEST_SEED=base replays the test."""
    nodeid, tag = item.nodeid, f"seed{index}"
    if item.config.getoption("seeds") > 1:
        for old, new in ((f"[{tag}]", ""), (f"[{tag}-", "["), (f"-{tag}]", "]"), (f"-{tag}-", "-")):
            if old in nodeid:
                nodeid = nodeid.replace(old, new, 1)
                break
    return base_seed() + index, nodeid


@pytest.fixture
def seed(request: pytest.FixtureRequest, seed_index: int) -> int:
    """This test's seed (see the module docstring)."""
    return derive_seed(*_replay(request.node, seed_index))


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def module_seed(request: pytest.FixtureRequest, seed_index: int) -> int:
    """The seed of module-scoped fixtures: from the base seed and the module's node id."""
    return derive_seed(base_seed() + seed_index, request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed seeded test (in setup, call or teardown) ends its report with the line that replays it."""
    report = yield
    if report.failed and "seed_index" in getattr(item, "fixturenames", ()):
        params = getattr(item, "callspec", None)
        base, nodeid = _replay(item, params.params.get("seed_index", 0) if params else 0)
        report.sections.append(("seed", f"replay with {SEED_ENV}={base} pytest '{nodeid}'"))
    return report


# --- small random Hugging Face checkpoints (need torch + transformers) -----------------------------

# A tiny NemotronH with every layer kind: vocab 101, hidden 32, 4 heads x 8 (2 kv), Mamba 4 heads x 8,
# state 16 in 2 groups, chunk 8, 4 experts top-2.
TINY_HF_CONFIG: dict[str, object] = dict(
    vocab_size=101, hidden_size=32, hybrid_override_pattern="M*-E", num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, intermediate_size=48, mamba_num_heads=4, mamba_head_dim=8, ssm_state_size=16, n_groups=2,
    chunk_size=8, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
    moe_shared_expert_intermediate_size=40,
)  # fmt: skip


def randomize_weights(model: Any) -> None:
    """Draw every parameter and the router's correction bias at random, in place.

    HF's init (D = 1, unit norms, zero router bias, near-constant A_log) hides mistakes in numerical tests.
    """
    import torch

    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("A_log"):
                tensor.copy_(torch.log(torch.rand_like(tensor) * 4 + 0.5))
            elif name.endswith(("norm.weight", "norm_f.weight", ".D")):
                tensor.copy_(1 + 0.3 * torch.randn_like(tensor))
            elif name.endswith("dt_bias"):
                tensor.copy_(torch.randn_like(tensor) - 2)
            elif name.endswith("e_score_correction_bias"):
                tensor.copy_(torch.randn_like(tensor) * 0.1)
            elif tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.2)


def make_hf_checkpoint(
    directory: Path,
    seed: int,
    pattern: str = "M*-E",
    dtype: str = "float32",
    shard: str | None = None,
    randomize: bool = False,
    **overrides: object,
) -> Path:
    """Write a random NemotronH checkpoint with transformers' save_pretrained into `directory`.

    seed: torch's seed for HF's init and the draws (a test's `seed` fixture); dtype: "float32", "bfloat16" or "float16"; shard: save_pretrained's max_shard_size (e.g. "20KB")
    for a sharded checkpoint with an index; randomize: draw every parameter (A_log, norms, D, dt_bias,
    the router's correction bias included) instead of HF's init, whose near-constant values hide
    mistakes in numerical tests; overrides: NemotronHConfig fields over TINY_HF_CONFIG.
    """
    import pytest

    torch = pytest.importorskip("torch", reason="HF checkpoints are made with torch (pip install -e '.[test]')")
    transformers = pytest.importorskip("transformers", reason="HF checkpoints are made with transformers")
    torch.manual_seed(seed)
    config = transformers.NemotronHConfig(**{**TINY_HF_CONFIG, "hybrid_override_pattern": pattern, **overrides})
    model = transformers.NemotronHForCausalLM(config).eval()
    if randomize:
        randomize_weights(model)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.to(getattr(torch, dtype)).save_pretrained(directory, **kwargs)
    return Path(directory)


def safetensors_files(directory: Path) -> dict[str, bytes]:
    """Every *.safetensors file of a directory by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted(Path(directory).glob("*.safetensors"))}


def record_again(artifact: Path, *relatives: str) -> None:
    """Rewrite tessera.json's size and sha256 of `relatives` after a test edited those files on purpose (as
    someone rewriting both would), so that what the test reaches is the check behind the hash."""
    import json

    from tessera.safe_io import file_record

    manifest = Path(artifact) / "tessera.json"
    data = json.loads(manifest.read_text())
    for relative in relatives:
        data["files"][relative] = file_record(Path(artifact) / relative)
    manifest.write_text(json.dumps(data, indent=2) + "\n")

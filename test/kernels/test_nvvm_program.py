"""A whole NVVM program — under --precision fp32 every kernel SIMT (the f32 projections have no tensor-core path
on Hopper), under bf16 the projections on the WGMMA GEMM — in launch order, the state carried on the "device"
between calls, run through GpuSession on the lockstep simulator with warps of 32 (its Hopper model: TMA,
mbarriers, WGMMA), against the reference executor. This is what runtime/cuda.py runs on a Hopper GPU
(benchmarks/hopper.py runs it there). The model is the tiny config: every layer kind, MoE included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import NEEDS_MLIR, run_tool
from sim_driver import SimulatedDriver

pytestmark = NEEDS_MLIR

CONFIGS = Path(__file__).parent.parent.parent / "configs"
PROMPT = [5, 7, 9, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71]
TINY = CONFIGS / "nemotron_h_tiny.yaml"  # Mamba, MLP, attention and MoE layers
SIMULATED_NEW_TOKENS = 6  # decode steps of the HF contract here (the simulator's time; the CPU targets run 16)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(actual).all(), "NaN / inf in the logits"
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _sessions(tmp_path: Path, precision: str) -> tuple[Any, Any, dict[str, Any]]:
    """(the NVVM program on the simulated driver, the reference executor, program.json) of the dense tiny model."""
    from tessera.model.config import config_from_dict
    from tessera.model.weight_init import random_weights
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession
    from tessera.targets.reference import ReferenceSession

    out = tmp_path / "out"
    run_tool("tessera_compile", TINY, "--target", "nvvm", "--target", "reference",
             "--precision", precision, "--max-seq-len", "48", "-o", out, "-q")  # fmt: skip
    artifact = read_artifact(out)
    program = json.loads((out / "nvvm" / "program.json").read_text())
    assert program["format"] == "tessera-nvvm-program"
    config = config_from_dict(artifact.config, str(out / "tessera.json"), strict=False)
    weights = random_weights(config, int(artifact.weights.get("seed", 0)))
    driver = SimulatedDriver(wave_size=32)
    module = driver.load_module((out / "nvvm" / "kernels.mlir").read_bytes())
    return GpuSession(program, driver, module, weights, target="nvvm"), ReferenceSession.open(artifact), program


@pytest.mark.parametrize(("precision", "bound"), [("fp32", 1e-4), ("bf16", 2e-2)])
def test_whole_program_matches_the_reference(tmp_path: Path, precision: str, bound: float) -> None:
    """fp32: every kernel SIMT; bf16: the projections on the WGMMA GEMM, its tensor maps encoded by the session,
    and attention and the chunked scan on WGMMA with operands their lanes stage (dynamic shared memory, no
    tensor maps). Profiled as
    tessera-run --profile profiles it: every launch timed, the GEMMs' and attention's FLOP/s counted."""
    session, reference, program = _sessions(tmp_path, precision)

    def program_launches(name: str) -> list[dict[str, Any]]:
        return program["programs"][name]["launches"]

    launches = [launch for listing in program["programs"].values() for launch in listing["launches"]]
    mapped = [launch for launch in launches if "tensor_maps" in launch]
    lane_staged = ("attention", "ssd_scan")  # the prefill's (the decode step's attention is SIMT, split)
    staged = [launch for launch in launches if launch["kind"] in lane_staged] if precision == "bf16" else []
    assert bool(mapped) == bool(staged) == (precision == "bf16")
    assert all((launch["shared_bytes"] > 0) == (launch in mapped or launch in staged) for launch in launches)
    profiler = session.start_profiling()  # tessera-run --profile's: each launch between two device events
    # 17 tokens: a chunk of 16 and one more (the scan's chunk boundary), then a piece whose last position's
    # logits alone come back (its row tail, the final norm and lm_head, run on that row), and two decode steps.
    assert relative_error(session.prefill(PROMPT[:17]), reference.prefill(PROMPT[:17])) <= bound
    last = session.prefill(PROMPT[17:], last_only=True)
    assert last.shape == (1, 301) and relative_error(last, reference.prefill(PROMPT[17:])[-1:]) <= bound
    for token in (3, 4):
        assert relative_error(session.decode(token), reference.decode(token)) <= bound
    summary = profiler.summary()
    assert summary["prefill"]["calls"] == 2 and summary["prefill"]["tokens"] == len(PROMPT)
    assert summary["decode"]["calls"] == 2 and summary["decode"]["tokens"] == 2
    for name, entry in summary.items():
        kinds = entry["kinds"]
        assert sum(row["launches"] for row in kinds.values()) == entry["calls"] * len(program_launches(name))
        assert abs(sum(row["share"] for row in kinds.values()) - 1) < 1e-9 and entry["device_seconds"] > 0
        attention = "attention" if name == "prefill" else "attention_split"  # decode: split over the keys
        assert all("flops_per_s" in kinds[kind] for kind in ("matmul", attention)), kinds
    assert "attention" in profiler.report() and "TFLOP/s" in profiler.report()


def test_bf16_program_passes_its_tensor_maps(tmp_path: Path) -> None:
    """The bf16 program: every projection is the WGMMA GEMM with its x and W as tensor maps (boxes of
    128 x 64 bf16 for x, 128 or 256 x 64 for W, 128-byte swizzle; x's rows the call's tokens) and the dynamic
    shared memory of their 4-stage ring."""
    out = tmp_path / "out"
    run_tool("tessera_compile", TINY, "--target", "nvvm", "--max-seq-len", "48", "-o", out, "-q")
    manifest = json.loads((out / "tessera.json").read_text())["targets"]["nvvm"]
    assert manifest["precision"] == "bf16"  # the target's default
    program = json.loads((out / "nvvm" / "program.json").read_text())
    matmuls = [launch for launch in program["programs"]["prefill"]["launches"] if launch["kernel"].startswith("matmul")]
    assert matmuls
    for launch in matmuls:
        block_n = 256 if program["weights"][launch["args"][1]["weight"]]["shape"][0] > 128 else 128
        assert launch["shared_bytes"] == 4 * (128 + block_n) * 64 * 2 + 8 * 8 and launch["threads"] == 384
        x_map, w_map = launch["tensor_maps"]
        assert (x_map["arg"], x_map["rows"], x_map["box_rows"], x_map["box_cols"]) == (0, "tokens", 128, 64)
        assert (w_map["arg"], w_map["box_rows"], w_map["swizzle"]) == (1, block_n, "128B")
        assert w_map["rows"] == program["weights"][launch["args"][1]["weight"]]["shape"][0]
    if manifest["sass"] is not None:
        table = manifest["kernel_table"]
        for name, row in table.items():
            assert row.get("spills", 0) == 0, name
            if row["wgmma"]:  # the GEMM (its operands by TMA) and attention (staged by its lanes)
                assert row["hgmma"] > 0 and (row["utmaldg"] > 0) == (row["tensor_maps"] > 0), name


@pytest.fixture(scope="module")
def seeded_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model for nvvm (bf16), without weights: drawn from seed 7."""
    out = tmp_path_factory.mktemp("seeded") / "out"
    run_tool("tessera_compile", TINY, "--target", "nvvm", "--max-seq-len", "48", "--seed", "7", "-o", out, "-q")
    return out


def test_seeded_weights_are_drawn_on_the_device_bit_for_bit(seeded_tiny: Path) -> None:
    """A model without weights: the session draws every projection, the embedding, the experts and conv1d with
    the program's draw kernels (Philox on the device) and takes only the per-channel vectors from the host;
    each weight it holds is the host twin's, prepared as an upload would be, to the last bit."""
    from tessera.model.config import config_from_dict
    from tessera.model.weight_init import SeededWeights
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession
    from tessera.runtime.weights import prepare_weights

    out = seeded_tiny
    artifact = read_artifact(out)
    program = json.loads((out / "nvvm" / "program.json").read_text())
    config = config_from_dict(artifact.config, str(out / "tessera.json"), strict=False)
    seeded = SeededWeights(config, 7)
    driver = SimulatedDriver(wave_size=32)
    module = driver.load_module((out / "nvvm" / "kernels.mlir").read_bytes())
    session = GpuSession(program, driver, module, seeded, target="nvvm")
    drawn = {draw["args"][0]["drawn"]["weight"] for draw in program["weight_draws"]}
    matrices = {name for name, entry in program["weights"].items() if len(entry["shape"]) >= 2}
    assert drawn == matrices  # every matrix; the vectors (norms, A_log, D, dt_bias, biases) from the host
    assert {program["weights"][name].get("packing", {}).get("dtype") for name in drawn} == {"bf16", None}
    expected = prepare_weights(program["weights"], seeded.arrays())
    for name, array in expected.items():
        held = np.empty_like(array)
        driver.download(session.weights[name], held)
        assert np.array_equal(held.view(np.uint8), array.view(np.uint8)), name
    uploaded = GpuSession(program, driver, module, seeded.arrays(), target="nvvm")
    assert np.array_equal(session.prefill(PROMPT[:5]), uploaded.prefill(PROMPT[:5]))
    assert session.load_seconds > 0
    # Each program's arena is kept between calls: a decode step after the first allocates nothing.
    assert np.array_equal(session.decode(3), uploaded.decode(3))
    allocated = driver.next  # the simulated driver's next free address
    assert np.array_equal(session.decode(4), uploaded.decode(4))
    assert driver.next == allocated


def test_weight_draws_are_checked_before_any_launch(seeded_tiny: Path) -> None:
    """A draw that would write past its weight, or into one that is not declared, or in another element type
    than its kernel was compiled for, is refused in one line before the session allocates anything."""
    from tessera.runtime.program_check import ProgramError, check_program

    program = json.loads((seeded_tiny / "nvvm" / "program.json").read_text())
    check_program(program, "program.json", "nvvm")

    def refused(edit: Any, phrase: str) -> None:
        edited = json.loads(json.dumps(program))
        edit(edited["weight_draws"][0]["args"][0]["drawn"], edited)
        with pytest.raises(ProgramError, match=phrase):
            check_program(edited, "program.json", "nvvm")

    refused(lambda drawn, _: drawn.update(rows=drawn["rows"] + 1), r"weight_draws\[0\].*rows: expected an integer")
    refused(lambda drawn, _: drawn.update(weight="nowhere"), r"weight 'nowhere' is not declared")
    bf16 = next(index for index, draw in enumerate(program["weight_draws"]) if "bf16" in draw["kernel"])

    def as_f32(drawn: dict[str, Any], edited: dict[str, Any]) -> None:
        name = edited["weight_draws"][bf16]["args"][0]["drawn"]["weight"]
        edited["weights"][name]["packing"]["dtype"] = "f32"

    refused(as_f32, r"'f32'.*the kernel was compiled for .*'bf16'")  # by its readers and its draw alike


@pytest.mark.parametrize(("case", "precision"), [("odd_sizes", "fp32"), ("odd_sizes", "bf16"), ("every_kind", "fp32")])
def test_the_hf_contract_holds_on_the_simulated_hopper(tmp_path: Path, seed: int, case: str, precision: str) -> None:
    """Hugging Face's own logits and greedy tokens, against the NVVM program on the simulator: sizes that fit no
    tile, TMA box or vector width (hidden 72, head_dim 12 with one KV head, Mamba heads of 10 channels, vocab
    301; the bf16 GEMMs whose K is not a multiple of 8 take the block GEMM instead of TMA), and every layer kind
    with MoE; a 13-token prompt, not a multiple of the chunk. fp32: within 1e-4 and HF's first
    SIMULATED_NEW_TOKENS greedy tokens; bf16 (weights, activations and products in bf16): within 2e-2."""
    hf_contract = pytest.importorskip("test_hf_contract", reason="the HF oracle needs torch and transformers")
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_session import GpuSession
    from tessera.runtime.integrity import artifact_weights

    checkpoint = hf_contract.make_checkpoint(tmp_path / "hf", seed, **hf_contract.CASES[case])
    prompt, new_tokens = hf_contract.PROMPT, SIMULATED_NEW_TOKENS
    expected, expected_tokens = hf_contract.hf_reference(checkpoint, prompt, uses_cache=True)
    out = tmp_path / "out"
    run_tool("tessera_compile", checkpoint, "--target", "nvvm", "--precision", precision, "-o", out, "-q")
    artifact = read_artifact(out)
    program = json.loads((out / "nvvm" / "program.json").read_text())
    driver = SimulatedDriver(wave_size=32)
    module = driver.load_module((out / "nvvm" / "kernels.mlir").read_bytes())
    session = GpuSession(program, driver, module, artifact_weights(artifact), target="nvvm")
    logits = session.prefill(prompt)
    tokens, last = [], logits[-1]
    for _ in range(new_tokens):
        tokens.append(int(np.argmax(last)))
        last = session.decode(tokens[-1])
    assert relative_error(logits, expected) <= (1e-4 if precision == "fp32" else 2e-2)
    assert tokens == expected_tokens[:new_tokens] or precision == "bf16"


def test_device_out_of_memory_names_what_did_not_fit(seeded_tiny: Path) -> None:
    """A device whose memory runs out while the session places the model: one line naming the weight (or
    state, or arena) and its size, the driver's own error after it — no traceback, no hang."""
    from tessera.model.config import config_from_dict
    from tessera.model.weight_init import SeededWeights
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.gpu_module import DeviceBuffer, GpuError
    from tessera.runtime.gpu_session import GpuSession

    class SmallDevice(SimulatedDriver):
        def alloc(self, nbytes: int) -> DeviceBuffer:
            if self.next + nbytes > 64 * 1024:
                raise GpuError(f"cannot allocate {nbytes} bytes")
            return super().alloc(nbytes)

    artifact = read_artifact(seeded_tiny)
    config = config_from_dict(artifact.config, str(seeded_tiny / "tessera.json"), strict=False)
    program = json.loads((seeded_tiny / "nvvm" / "program.json").read_text())
    driver = SmallDevice(wave_size=32)
    module = driver.load_module((seeded_tiny / "nvvm" / "kernels.mlir").read_bytes())
    with pytest.raises(
        GpuError, match=r"^(weight|state) '[\w.]+': \d+\.\d\d GiB do not fit on the simulator device \("
    ):
        GpuSession(program, driver, module, SeededWeights(config, 7), target="nvvm")

"""Nothing native runs on unchecked input (issue 12, class 2).

  a  an artifact records the size and sha256 of every file but its weight shards; a session checks each
     file it uses (program.json, LLVM IR, kernel library, weights manifest, tokenizer) before using it
  b  weight shards: size and header at open, hashed while they stream in, refused before the first token;
     TESSERA_VERIFY_WEIGHTS=0 / verify=False skips the hash (never the size)
  c  kernel-cache and JIT-cache entries that are empty, truncated or corrupt are rebuilt, never used
  d  a truncated AOT library is refused in one line, not loaded (it died with SIGBUS)
  e  program.json is checked against its schema and its kernels' compiled signatures before any launch,
     also when its sha256 record was rewritten to match (someone who rewrites both files); and its kernel
     table against the digest linked into the code, also when the table was regenerated to match the edit

Every failure is one stderr line and exit 1 — never a traceback or a signal.
"""

from __future__ import annotations

import ctypes
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import NEEDS_MLIR, assert_one_line_error, make_hf_checkpoint, record_again, run_tool

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "nemotron_h_tiny.yaml"  # every layer kind
RUN = ("--input-ids", "5,7,9", "--max-new-tokens", "3", "--json")


def tokens(result: Any) -> list[int]:
    return json.loads(result.stdout.splitlines()[-1])["tokens"]


def copy_of(artifact: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    return copy


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


# --- a compiled tiny artifact (x86 + reference), compiled once into a cache of its own -----------------


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(artifact, its kernel cache): a private cache, so that the cache tests corrupt entries no one shares."""
    root = tmp_path_factory.mktemp("integrity")
    cache, out = root / "cache", root / "tiny"
    env = {"TESSERA_CACHE_DIR": str(cache)}
    run_tool("tessera_compile", TINY, "--target", "x86", "--target", "reference", "--max-seq-len", "64",
             "-o", out, "-q", env=env)  # fmt: skip
    return out, cache


@pytest.fixture(scope="module")
def tiny(compiled: tuple[Path, Path]) -> Path:
    return compiled[0]


@pytest.fixture(scope="module")
def expected_tokens(tiny: Path) -> list[int]:
    return tokens(run_tool("tessera_run", tiny, *RUN, env={"TESSERA_KERNELS": "aot"}))


# --- a: file records -----------------------------------------------------------------------------------


@NEEDS_MLIR
def test_every_file_but_the_manifest_is_recorded(tiny: Path) -> None:
    from tessera.runtime.artifact import read_artifact
    from tessera.safe_io import file_record

    artifact = read_artifact(tiny)
    on_disk = {p.relative_to(tiny).as_posix() for p in tiny.rglob("*") if p.is_file()} - {"tessera.json"}
    assert set(artifact.files) == on_disk
    assert {"graph.mlir", "x86/program.json", "x86/kernels.ll", "x86/kernels.so", "x86/kernels.amx.so"} <= on_disk
    for relative, record in artifact.files.items():
        assert record == file_record(tiny / relative), relative


@NEEDS_MLIR
@pytest.mark.parametrize(
    ("relative", "env"),
    [
        ("x86/program.json", {}),
        ("x86/kernels.ll", {"TESSERA_KERNELS": "jit"}),
        ("x86/kernels.so", {"TESSERA_KERNELS": "aot", "TESSERA_ISA": "generic"}),
        ("graph.mlir", {"TESSERA_TARGET": "reference"}),
    ],
)
def test_a_modified_or_missing_file_is_named_before_it_is_used(
    tiny: Path, tmp_path: Path, relative: str, env: dict[str, str]
) -> None:
    copy = copy_of(tiny, tmp_path)
    target = ["--target", env.pop("TESSERA_TARGET")] if "TESSERA_TARGET" in env else []
    flip_byte(copy / relative, (copy / relative).stat().st_size // 2)  # same size: only the hash sees it
    result = run_tool("tessera_run", copy, *target, *RUN, ok=False, env=env)
    assert_one_line_error(result, relative.split("/")[-1], "sha256 does not match")
    (copy / relative).unlink()
    result = run_tool("tessera_run", copy, *target, *RUN, ok=False, env=env)
    assert_one_line_error(result, relative.split("/")[-1])


@NEEDS_MLIR
def test_an_unrecorded_file_and_an_old_artifact_are_refused(tiny: Path, tmp_path: Path) -> None:
    copy = copy_of(tiny, tmp_path)
    manifest = copy / "tessera.json"
    data = json.loads(manifest.read_text())
    del data["files"]["x86/program.json"]
    manifest.write_text(json.dumps(data))
    assert_one_line_error(run_tool("tessera_run", copy, *RUN, ok=False), "no sha256 recorded for 'x86/program.json'")
    data["format_version"] = 1
    manifest.write_text(json.dumps(data))
    assert_one_line_error(run_tool("tessera_run", copy, *RUN, ok=False), "format_version 1", "rebuild it")


@NEEDS_MLIR
def test_a_modified_tokenizer_is_refused_before_it_is_read(tiny: Path, tmp_path: Path) -> None:
    copy = copy_of(tiny, tmp_path)
    (copy / "tokenizer.json").write_text('{"not": "read"}\n')
    data = json.loads((copy / "tessera.json").read_text())
    data["tokenizer"] = "tokenizer.json"
    (copy / "tessera.json").write_text(json.dumps(data))
    record_again(copy, "tokenizer.json")
    (copy / "tokenizer.json").write_text('{"not": "reed"}\n')  # same size: only the hash sees it
    result = run_tool("tessera_run", copy, "--prompt", "hello", ok=False)
    assert_one_line_error(result, "tokenizer.json", "sha256 does not match")


# --- b: weight shards ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_artifact(tmp_path_factory: pytest.TempPathFactory, module_seed: int) -> Path:
    root = tmp_path_factory.mktemp("checkpoint")
    hf = make_hf_checkpoint(root / "hf", module_seed, dtype="bfloat16", randomize=True)
    out = root / "out"
    run_tool("tessera_compile", hf, "--target", "reference", "--max-seq-len", "32", "-o", out, "-q")
    return out


def test_shards_are_left_to_the_weights_manifest(checkpoint_artifact: Path) -> None:
    from tessera.runtime.artifact import read_artifact

    files = read_artifact(checkpoint_artifact).files
    shards = sorted(p.relative_to(checkpoint_artifact).as_posix() for p in checkpoint_artifact.glob("weights/*"))
    assert "weights/manifest.json" in shards
    assert [s for s in shards if s in files] == ["weights/manifest.json"]


def test_a_corrupt_shard_fails_before_the_first_token(checkpoint_artifact: Path, tmp_path: Path) -> None:
    copy = copy_of(checkpoint_artifact, tmp_path)
    shard = next(copy.glob("weights/*.safetensors"))
    flip_byte(shard, shard.stat().st_size - 3)  # a tensor's bits: size and header still check
    logits = tmp_path / "logits.npy"
    result = run_tool("tessera_run", copy, *RUN, "--logits-out", logits, ok=False)
    assert_one_line_error(result, shard.name, "sha256 does not match")
    assert not logits.exists()
    # The explicit opt-out skips the hash (and runs, on the bits as they are) ...
    run_tool("tessera_run", copy, *RUN, env={"TESSERA_VERIFY_WEIGHTS": "0"})
    assert_one_line_error(
        run_tool("tessera_run", copy, *RUN, ok=False, env={"TESSERA_VERIFY_WEIGHTS": "no"}), "TESSERA_VERIFY_WEIGHTS"
    )
    # ... but never the size: a truncated shard is refused before anything is mapped.
    truncate(shard, shard.stat().st_size - 100)
    result = run_tool("tessera_run", copy, *RUN, ok=False, env={"TESSERA_VERIFY_WEIGHTS": "0"})
    assert_one_line_error(result, shard.name, "truncated or modified")


def test_a_modified_weights_manifest_is_refused(checkpoint_artifact: Path, tmp_path: Path) -> None:
    copy = copy_of(checkpoint_artifact, tmp_path)
    manifest = copy / "weights" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"tessera-weights"', '"tessera-weightz"', 1))  # same size
    assert_one_line_error(run_tool("tessera_run", copy, *RUN, ok=False), "manifest.json", "sha256 does not match")


def test_streamed_weights_equal_the_mapped_ones_and_are_hashed(checkpoint_artifact: Path, tmp_path: Path) -> None:
    from tessera.model.checkpoint import load_weights
    from tessera.model.safetensors_io import CheckpointError, to_float32

    copy = copy_of(checkpoint_artifact, tmp_path) / "weights"
    streamed, raw = load_weights(copy), load_weights(copy, dtype=None)
    assert list(streamed) == list(raw)
    for name, array in streamed.items():
        assert array.dtype == np.float32 and np.array_equal(array, to_float32(raw[name], "BF16")), name
    shard = next(copy.glob("*.safetensors"))
    flip_byte(shard, shard.stat().st_size - 1)
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_weights(copy)
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_weights(copy, dtype=None)
    assert set(load_weights(copy, verify=False)) == set(streamed)


# --- c: cache entries ----------------------------------------------------------------------------------

CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "empty": lambda path: truncate(path, 0),
    "truncated": lambda path: truncate(path, path.stat().st_size // 2),
    "flipped": lambda path: flip_byte(path, path.stat().st_size - 1),
}


def test_a_cache_entry_that_does_not_check_is_rebuilt(tmp_path: Path) -> None:
    from tessera.runtime.integrity import read_cache_entry
    from tessera.targets.kernel_cache import KernelCache, cache_key

    cache = KernelCache(tmp_path)
    key = cache_key("test", "entry")
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"kernel bytes " * 100

    assert cache.get_or_build("obj", key, build) == build()
    entry = tmp_path / "obj" / key[:2] / key
    for name, corrupt in CORRUPTIONS.items():
        corrupt(entry)
        before = len(builds)
        assert cache.get_or_build("obj", key, build) == b"kernel bytes " * 100, name
        assert len(builds) == before + 1, name  # rebuilt, not used
        assert read_cache_entry(entry) == b"kernel bytes " * 100, name  # and rewritten
    assert cache.get_or_build("obj", key, build) == b"kernel bytes " * 100
    assert cache.hits >= 1


@NEEDS_MLIR
def test_a_compile_over_corrupt_cache_entries_rebuilds_them(
    compiled: tuple[Path, Path], expected_tokens: list[int], tmp_path: Path
) -> None:
    from tessera.runtime.integrity import read_cache_entry

    artifact, warm = compiled
    cache = tmp_path / "cache"
    shutil.copytree(warm, cache)
    entries = sorted(p for p in cache.rglob("*") if p.is_file() and p.parent.parent.name in ("llvm", "obj"))
    assert entries
    corrupted = entries[::3]
    for index, entry in enumerate(corrupted):  # each way of breaking an entry, in turn
        list(CORRUPTIONS.values())[index % len(CORRUPTIONS)](entry)
    out = tmp_path / "out"
    env = {"TESSERA_CACHE_DIR": str(cache)}
    run_tool("tessera_compile", TINY, "--target", "x86", "--max-seq-len", "64", "-o", out, "-q", env=env)
    for name in ("kernels.ll", "program.json"):
        assert (out / "x86" / name).read_bytes() == (artifact / "x86" / name).read_bytes(), name
    assert all(read_cache_entry(entry) is not None for entry in corrupted)
    assert tokens(run_tool("tessera_run", out, *RUN, env={"TESSERA_KERNELS": "aot"})) == expected_tokens


@NEEDS_MLIR
def test_a_corrupt_jit_object_is_rebuilt_not_loaded(tiny: Path, tmp_path: Path) -> None:
    from tessera.runtime.integrity import read_cache_entry

    env = {"TESSERA_CACHE_DIR": str(tmp_path / "cache"), "TESSERA_KERNELS": "jit"}
    expected = tokens(run_tool("tessera_run", tiny, *RUN, env=env))  # the JIT's own: code for this CPU
    (entry,) = (tmp_path / "cache" / "jit").iterdir()
    for name, corrupt in CORRUPTIONS.items():
        corrupt(entry)
        result = run_tool("tessera_run", tiny, *RUN, env=env)  # it aborted every later run before
        assert tokens(result) == expected, name
        assert read_cache_entry(entry) is not None, name


# --- d: AOT libraries ----------------------------------------------------------------------------------


@NEEDS_MLIR
def test_a_truncated_library_is_refused_not_loaded(tiny: Path, tmp_path: Path) -> None:
    copy = copy_of(tiny, tmp_path)
    library = copy / "x86" / "kernels.so"
    truncate(library, library.stat().st_size // 2)  # dlopen maps it: this was a SIGBUS
    result = run_tool("tessera_run", copy, *RUN, ok=False, env={"TESSERA_KERNELS": "aot", "TESSERA_ISA": "generic"})
    assert result.returncode == 1
    assert_one_line_error(result, "kernels.so", "truncated or modified")


@NEEDS_MLIR
def test_the_loader_checks_each_library_against_its_record(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tessera.runtime.integrity import IntegrityError
    from tessera.runtime.kernels import FileRecords, load_kernels

    monkeypatch.setenv("TESSERA_ISA", "generic")
    x86 = tiny / "x86"
    libraries = {"generic": x86 / "kernels.so"}
    with pytest.raises(IntegrityError, match=r"no sha256 recorded for .*kernels\.so"):
        load_kernels(x86 / "kernels.ll", libraries, "aot", records=FileRecords({}, "tessera.json"))
    wrong = {x86 / "kernels.so": {"sha256": "0" * 64, "bytes": (x86 / "kernels.so").stat().st_size}}
    with pytest.raises(IntegrityError, match=r"kernels\.so: sha256 does not match"):
        load_kernels(x86 / "kernels.ll", libraries, "aot", records=FileRecords(wrong, "tessera.json"))


# --- e: program.json against its kernels ---------------------------------------------------------------


def _launches(program: dict[str, Any]) -> list[dict[str, Any]]:
    return [launch for body in program["programs"].values() for launch in body["launches"]]


def _first(program: dict[str, Any], predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(launch for launch in _launches(program) if predicate(launch))


def _arg(program: dict[str, Any], key: str, prefix: str) -> str:
    """The name of the first weight or state (`key`) a launch passes whose name starts with `prefix`."""
    names = [arg[key] for launch in _launches(program) for arg in launch["args"] if key in arg]
    return next(name for name in names if name.startswith(prefix))


def _state_shape(program: dict[str, Any]) -> str:
    name = _arg(program, "state", "layers.0.conv")
    shape = program["states"][name]["shape"]
    program["states"][name]["shape"] = [shape[0], shape[1] + 1]
    return f"state '{name}': shape {[shape[0], shape[1] + 1]}, the kernel was compiled for {shape}"


def _grid(program: dict[str, Any]) -> str:
    launch = _first(program, lambda launch: launch["grid"] > 1)
    compiled, launch["grid"] = launch["grid"], launch["grid"] * 10
    return f"grid {compiled * 10}, the kernel was compiled for {compiled}"


def _kv_cache(program: dict[str, Any]) -> str:
    for entry in program["states"].values():
        if entry["kind"] in ("k_cache", "v_cache"):
            entry["shape"][0] = 8  # a cache too short for the positions the kernel writes
    return "_cache': shape [8,"


def _cache_kind(program: dict[str, Any]) -> str:
    name = next(name for name, entry in program["states"].items() if entry["kind"] == "k_cache")
    program["states"][name]["kind"] = "conv_state"  # would lift the KV-capacity limit
    return f"state '{name}': kind 'conv_state', the kernel was compiled for 'k_cache'"


def _weight_shape(program: dict[str, Any]) -> str:
    name = _arg(program, "weight", "layers.0.mamba2_mixer.in_proj")
    program["weights"][name]["shape"][0] += 1
    return f"weight '{name}': shape"


def _packing(program: dict[str, Any]) -> str:
    name = _arg(program, "weight", "layers.0.mamba2_mixer.in_proj")
    program["weights"][name]["packing"]["nr"] = 16
    return f"weight '{name}': packing"


def _unknown_kernel(program: dict[str, Any]) -> str:
    program["programs"]["decode"]["launches"][0]["kernel"] = "nope"
    return "'nope' is not in the kernel list"


def _undeclared_state(program: dict[str, Any]) -> str:
    launch = _first(program, lambda launch: any("state" in arg for arg in launch["args"]))
    next(arg for arg in launch["args"] if "state" in arg)["state"] = "layers.99.ssm_state"
    return "state 'layers.99.ssm_state' is not declared in states"


def _slot_width(program: dict[str, Any]) -> str:
    program["programs"]["prefill"]["slots"][0] = -1
    return "programs.prefill.slots[0]: expected an integer in [1,"


def _buffer_width(program: dict[str, Any]) -> str:
    launch = _first(program, lambda launch: any("buffer" in arg for arg in launch["args"]))
    next(arg for arg in launch["args"] if "buffer" in arg)["features"] = 10**6
    return "does not fit slot"


def _huge_grid(program: dict[str, Any]) -> str:
    _first(program, lambda launch: launch["grid"] > 1)["grid"] = 2**40
    return "grid: expected an integer in [0, 2147483647], got 1099511627776"


def _argument_count(program: dict[str, Any]) -> str:
    _first(program, lambda launch: len(launch["args"]) > 2)["args"].pop()
    return "arguments, the kernel was compiled for"


EDITS = {
    "state shape": _state_shape, "grid": _grid, "kv cache": _kv_cache, "cache kind": _cache_kind,
    "weight shape": _weight_shape, "packing": _packing, "unknown kernel": _unknown_kernel,
    "undeclared state": _undeclared_state, "slot width": _slot_width, "buffer width": _buffer_width,
    "huge grid": _huge_grid, "argument count": _argument_count,
}  # fmt: skip


def _edited(tiny: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], str]) -> tuple[Path, str]:
    """A copy whose program.json is edited and re-recorded in tessera.json: only the program check stands."""
    copy = copy_of(tiny, tmp_path)
    path = copy / "x86" / "program.json"
    program = json.loads(path.read_text())
    phrase = edit(program)
    path.write_text(json.dumps(program))
    record_again(copy, "x86/program.json")
    return copy, phrase


@NEEDS_MLIR
@pytest.mark.parametrize("edit", ["state shape", "grid", "kv cache"])
def test_a_program_that_disagrees_with_its_kernels_ends_in_one_line(tiny: Path, tmp_path: Path, edit: str) -> None:
    copy, phrase = _edited(tiny, tmp_path, EDITS[edit])
    for kernels in ("aot", "jit"):
        result = run_tool("tessera_run", copy, *RUN, ok=False, env={"TESSERA_KERNELS": kernels})
        assert result.returncode == 1  # not a signal
        assert_one_line_error(result, "program.json", phrase)


@NEEDS_MLIR
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_every_program_edit_is_refused_before_kernels_load(
    tiny: Path, tmp_path: Path, edit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.runtime import x86_session
    from tessera.runtime.artifact import read_artifact
    from tessera.runtime.program_check import ProgramError

    copy, phrase = _edited(tiny, tmp_path, EDITS[edit])

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("kernels loaded from an unchecked program")

    monkeypatch.setattr(x86_session, "load_kernels", no_loading)
    with pytest.raises(ProgramError) as caught:
        x86_session.X86Session.open(read_artifact(copy))
    message = str(caught.value)
    assert "\n" not in message and "program.json" in message and phrase in message, message


@NEEDS_MLIR
def test_the_unedited_program_checks_and_amx_kernels_must_be_gemms(tiny: Path) -> None:
    from tessera.runtime.program_check import ProgramError, check_matrix_kernels, check_program

    program = json.loads((tiny / "x86" / "program.json").read_text())
    check_program(program, "program.json", "x86")
    gemms = [name for name, record in program["kernels"].items() if record["kind"] == "matmul"]
    check_matrix_kernels(program, "amx_kernels", gemms, "tessera.json")
    with pytest.raises(ProgramError, match="amx_kernels names 'embedding_"):
        check_matrix_kernels(program, "amx_kernels", [_first(program, lambda launch: True)["kernel"]], "tessera.json")


def _shrunk_states(program: dict[str, Any]) -> None:
    """The reviewer's attack: every conv/SSM state shrunk to [1] and the kernel table regenerated to match,
    so that the program agrees with its own table (only the digest in the code can tell)."""
    from tessera.lowering.convert_tile_to_x86 import KERNEL_FIELDS
    from tessera.runtime.program_check import check_program, kernel_signatures

    for entry in program["states"].values():
        if entry["kind"] in ("conv_state", "ssm_state"):
            entry["shape"] = [1]
    compiled = program["kernels"]
    program["kernels"] = {
        name: {"kind": compiled[name]["kind"], "dims": compiled[name]["dims"], **signature}
        for name, signature in kernel_signatures(program, KERNEL_FIELDS).items()
    }
    check_program(program, "program.json", "x86")  # consistent: the signature check alone would pass it


@NEEDS_MLIR
def test_a_kernel_table_regenerated_to_match_is_refused(tiny: Path, tmp_path: Path) -> None:
    copy = copy_of(tiny, tmp_path)
    path = copy / "x86" / "program.json"
    program = json.loads(path.read_text())
    _shrunk_states(program)
    path.write_text(json.dumps(program))
    record_again(copy, "x86/program.json")
    for kernels in ("aot", "jit"):  # it died with SIGABRT (heap corruption) in the first launch
        result = run_tool("tessera_run", copy, *RUN, ok=False, env={"TESSERA_KERNELS": kernels})
        assert result.returncode == 1, kernels
        library = "kernels.ll" if kernels == "jit" else "kernels."
        assert_one_line_error(result, "program.json: its kernels or launches are not the ones", library)


@NEEDS_MLIR
def test_every_library_carries_the_digest_of_its_program(tiny: Path) -> None:
    from tessera.runtime import openmp
    from tessera.runtime.kernels import load_kernels
    from tessera.runtime.program_check import ProgramError, check_program_digest, program_digest

    program = json.loads((tiny / "x86" / "program.json").read_text())
    digest = program_digest(program)
    openmp.load()  # the libraries with the native programs need it
    for name in ("kernels.so", "kernels.avx512.so", "kernels.amx.so"):  # (fp32: no avx512bf16 variants)
        library = ctypes.CDLL(str(tiny / "x86" / name))
        assert (ctypes.c_char * 64).in_dll(library, "tessera_program_sha256").raw == digest.encode(), name
    jit = load_kernels(tiny / "x86" / "kernels.ll", {}, "jit", records=None)
    assert jit.program_digests == {str(tiny / "x86" / "kernels.ll"): digest}
    check_program_digest(program, jit.program_digests, "program.json")
    with pytest.raises(ProgramError, match=r"^old\.so: no program digest .*rebuild with tessera-compile"):
        check_program_digest(program, {"old.so": None}, "program.json")  # an artifact built before the binding
    with pytest.raises(ProgramError, match=r"^program\.json: its kernels or launches are not the ones k\.so was"):
        check_program_digest(program, {"k.so": "0" * 64}, "program.json")
    # Launches reordered, the kernel table untouched: the native programs bake each launch's grid in.
    launches = program["programs"]["prefill"]["launches"]
    launches[0], launches[1] = launches[1], launches[0]
    with pytest.raises(ProgramError, match=r"its kernels or launches are not the ones"):
        check_program_digest(program, jit.program_digests, "program.json")


GPU_PROGRAMS = {
    "rocdl": ("hybrid.mlir", "gfx942", "bf16"),
    "nvvm": ("mamba2.mlir", "sm_90a", "bf16"),
}


@pytest.fixture(scope="module", params=sorted(GPU_PROGRAMS))
def gpu_program(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    target = str(request.param)
    graph, arch, precision = GPU_PROGRAMS[target]
    extra = " activation-dtype=bf16" if target == "nvvm" else ""
    pipeline = (
        f"convert-tessera-graph-to-schedule{{max-seq-len=32{extra}}},tessera-schedule-plan-buffers,"
        f"convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{{target={arch} precision={precision}}},"
        "tessera-tile-compute-footprint"
    )
    result = run_tool("tessera_opt", ROOT / "graph_examples" / graph, "-p", pipeline, "-t", f"{target}-program")
    return target, json.loads(result.stdout)


def test_gpu_programs_are_checked_against_their_kernels(gpu_program: tuple[str, dict[str, Any]]) -> None:
    from tessera.runtime.gpu_session import GpuSession
    from tessera.runtime.program_check import ProgramError, check_program

    target, program = gpu_program
    check_program(program, "program.json", target)

    def refused(edit: Callable[[dict[str, Any]], None], phrase: str) -> None:
        edited = json.loads(json.dumps(program))
        edit(edited)
        with pytest.raises(ProgramError, match=phrase):
            check_program(edited, "program.json", target)
        with pytest.raises(ProgramError, match=phrase):  # the session checks before touching the driver
            GpuSession(edited, None, None, {}, target)  # type: ignore[arg-type]

    def grid(edited: dict[str, Any]) -> None:
        launch = _first(edited, lambda launch: isinstance(launch["grid"]["x"][0], int))
        launch["grid"]["x"][0] += 64

    def threads(edited: dict[str, Any]) -> None:
        edited["programs"]["prefill"]["launches"][0]["threads"] *= 2

    def per(edited: dict[str, Any]) -> None:
        edited["programs"]["prefill"]["launches"][0]["grid"]["y"][1] = 0

    refused(grid, "grid .*the kernel was compiled for")
    refused(threads, "threads")
    refused(per, r"grid\.y\[1\]: expected an integer in \[1,")
    refused(_any_state_shape, "shape .*the kernel was compiled for")
    if target == "nvvm":

        def tensor_map(edited: dict[str, Any]) -> None:
            _first(edited, lambda launch: "tensor_maps" in launch)["tensor_maps"][0]["arg"] = 99

        def shared(edited: dict[str, Any]) -> None:
            _first(edited, lambda launch: launch.get("shared_bytes", 0) > 0)["shared_bytes"] -= 1024

        refused(tensor_map, r"tensor_maps\[0\]\.arg: expected an integer")
        refused(shared, "shared_bytes .*the kernel was compiled for")


def _any_state_shape(program: dict[str, Any]) -> None:
    program["states"][next(iter(program["states"]))]["shape"][0] += 1

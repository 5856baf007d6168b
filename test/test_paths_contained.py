"""Paths named in files stay inside their folder, and no command writes over or into its input.

Every path read from a file (a checkpoint index, model.yaml, tessera.json, a weights manifest, the export
record) must be relative and resolve, symlinks followed, inside the folder it belongs to: for a Hub repo
id, the repo's folder of the Hub cache, whose snapshot links point into its blobs/. Otherwise the command
refuses in one line naming the file and field, having written nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_one_line_error, make_hf_checkpoint, run_tool

from tessera.errors import TesseraError
from tessera.frontend.checkpoint import convert_checkpoint
from tessera.frontend.config import load_model
from tessera.model.checkpoint import load_weights
from tessera.runtime.artifact import read_artifact
from tessera.staging import staged_directory

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "nemotron_h_tiny.yaml"
INDEX = "model.safetensors.index.json"


def convert(*args: object, ok: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_tool("tessera_convert", *args, "--no-progress", ok=ok, env=env)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` by relative path: proof that a command left its input alone."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def edit_json(path: Path, change: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, module_seed: int) -> Path:
    """A single-file and a sharded tiny HF checkpoint, and the single one converted; tests copy them."""
    base = tmp_path_factory.mktemp("checkpoints")
    make_hf_checkpoint(base / "single", module_seed)
    make_hf_checkpoint(base / "sharded", module_seed, shard="20KB")
    convert_checkpoint(base / "single", base / "tessera", progress=False)
    return base


@pytest.fixture
def hf(checkpoints: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoints / "single", tmp_path / "hf"))


@pytest.fixture
def tessera_weights(checkpoints: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoints / "tessera", tmp_path / "tessera"))


# --- checkpoint index and directory -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "phrase"), [("../outside/x.safetensors", "leads outside"), ("/abs.safetensors", "absolute")]
)
def test_index_naming_a_file_outside_is_refused(checkpoints: Path, tmp_path: Path, name: str, phrase: str) -> None:
    hf = Path(shutil.copytree(checkpoints / "sharded", tmp_path / "hf"))
    (tmp_path / "outside").mkdir()
    first = sorted(hf.glob("*.safetensors"))[0]
    shutil.copy(first, tmp_path / "outside" / "x.safetensors")
    index = json.loads((hf / INDEX).read_text())
    tensor = next(iter(index["weight_map"]))
    index["weight_map"][tensor] = name
    (hf / INDEX).write_text(json.dumps(index))
    result = convert(hf, "-o", tmp_path / "out")
    assert_one_line_error(result, str(hf / INDEX), f"weight_map['{tensor}']", repr(name), phrase)
    assert not (tmp_path / "out").exists()


def test_shard_symlinked_out_of_the_directory_is_refused(hf: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    shutil.move(hf / "model.safetensors", tmp_path / "elsewhere" / "model.safetensors")
    (hf / "model.safetensors").symlink_to(tmp_path / "elsewhere" / "model.safetensors")
    result = convert(hf, "-o", tmp_path / "out")
    assert_one_line_error(result, str(hf / "model.safetensors"), "leads outside", str(hf.resolve()))
    assert not (tmp_path / "out").exists()


def test_shard_symlinked_within_the_directory_is_read(hf: Path, tmp_path: Path) -> None:
    (hf / "store").mkdir()
    shutil.move(hf / "model.safetensors", hf / "store" / "real.bin")
    (hf / "model.safetensors").symlink_to(Path("store") / "real.bin")
    manifest = convert_checkpoint(hf, tmp_path / "out", progress=False)
    assert manifest["tensors"] and load_weights(tmp_path / "out")


def test_config_json_symlinked_out_of_the_directory_is_refused(hf: Path, tmp_path: Path) -> None:
    shutil.move(hf / "config.json", tmp_path / "config.json")
    (hf / "config.json").symlink_to(tmp_path / "config.json")
    with pytest.raises(TesseraError, match=r"config\.json.*leads outside"):
        load_model(hf)


# --- Hub cache --------------------------------------------------------------------------------------------


def fake_hub_repo(cache: Path, repo_id: str, checkpoint: Path, redirect: dict[str, Path] | None = None) -> Path:
    """A Hub cache entry as huggingface_hub lays it out: refs/main names a revision whose snapshot holds
    one link per file into blobs/ (named by content hash). redirect: files whose link points elsewhere."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "c" * 40
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (folder / "blobs").mkdir()
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    for file in sorted(checkpoint.iterdir()):
        blob = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copy(file, folder / "blobs" / blob)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob)
    for name, target in (redirect or {}).items():
        (snapshot / name).unlink()
        (snapshot / name).symlink_to(target)
    return folder


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_hub_snapshot_links_into_blobs_are_read(hf: Path, tmp_path: Path, hub_env: dict[str, str]) -> None:
    (hf / "tokenizer.json").write_text("{}")
    folder = fake_hub_repo(tmp_path / "hub", "acme/tiny", hf)
    spec = load_model("acme/tiny")
    assert spec.root == folder.absolute() and spec.tokenizer_path is not None
    assert spec.weights_dir is not None
    manifest = convert_checkpoint(spec.weights_dir, tmp_path / "out", spec.config, progress=False, root=spec.root)
    direct = convert_checkpoint(hf, tmp_path / "direct", progress=False)
    assert manifest["shards"] == direct["shards"]  # same bytes, read through the links
    # A snapshot directory given as a path is held to its repo folder too.
    convert_checkpoint(spec.weights_dir, tmp_path / "by-path", progress=False)
    # -o inside the repo's cache folder would write into the input.
    result = convert("acme/tiny", "-o", folder / "converted", env=hub_env)
    assert_one_line_error(result, "lies inside the input")


def test_hub_snapshot_link_out_of_the_repo_folder_is_refused(hf: Path, tmp_path: Path, hub_env: dict[str, str]) -> None:
    (tmp_path / "elsewhere").mkdir()
    stolen = Path(shutil.copy(hf / "model.safetensors", tmp_path / "elsewhere" / "model.safetensors"))
    folder = fake_hub_repo(tmp_path / "hub", "acme/evil", hf, redirect={"model.safetensors": stolen})
    result = convert("acme/evil", "-o", tmp_path / "out", env=hub_env)
    assert_one_line_error(result, "model.safetensors", "leads outside", str(folder.resolve()))
    assert not (tmp_path / "out").exists()


# --- model.yaml ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("weights", "../hf", "leads outside"),
        ("weights", "/etc", "absolute"),
        ("weights", "link", "leads outside"),  # a symlink in the yaml's folder to a directory outside it
        ("tokenizer", "../tokenizer.json", "leads outside"),
        ("tokenizer", "~/tokenizer.json", "absolute"),
        ("weights", 7, "expected a relative path"),
    ],
)
def test_yaml_paths_stay_in_the_yaml_folder(hf: Path, tmp_path: Path, field: str, value: object, phrase: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link").symlink_to(hf)
    (tmp_path / "tokenizer.json").write_text("{}")
    yaml = folder / "model.yaml"
    yaml.write_text(TINY.read_text() + f"\n{field}: {json.dumps(value)}\n")
    with pytest.raises(TesseraError) as error:
        load_model(yaml)
    assert str(error.value).startswith(f"{yaml}: field '{field}': ") and phrase in str(error.value)


def test_yaml_paths_inside_the_folder_are_read(hf: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(hf, tmp_path / "model" / "weights")).parent
    (folder / "tokenizer.json").write_text("{}")
    yaml = folder / "model.yaml"
    yaml.write_text(TINY.read_text() + "\nweights: weights\ntokenizer: ./tokenizer.json\n")
    spec = load_model(yaml)
    assert spec.weights_dir == (folder / "weights").resolve() and spec.root == spec.weights_dir
    assert spec.tokenizer_path == (folder / "tokenizer.json").resolve()


# --- artifacts: tessera.json and the weights manifest ---------------------------------------------------


@pytest.fixture(scope="module")
def artifact(checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference artifact compiled from the tiny checkpoint (with its weights and a tokenizer)."""
    source = tmp_path_factory.mktemp("source") / "hf"
    shutil.copytree(checkpoints / "single", source)
    (source / "tokenizer.json").write_text("{}")
    out = tmp_path_factory.mktemp("artifacts") / "art"
    run_tool("tessera_compile", source, "--target", "reference", "-o", out, "-q")
    return out


@pytest.mark.parametrize(
    ("change", "field", "phrase"),
    [
        (lambda m: m["targets"]["reference"].__setitem__("program", "/etc/passwd"), "targets.reference.program", "absolute"),
        (lambda m: m["targets"]["reference"].__setitem__("program", "../x/graph.mlir"), "targets.reference.program", "leads outside"),
        (lambda m: m["weights"].__setitem__("dir", "../../weights"), "weights.dir", "leads outside"),
        (lambda m: m["weights"].__setitem__("dir", None), "weights.dir", "expected a relative path"),
    ],
    ids=["program-absolute", "program-parent", "weights-parent", "weights-null"],
)  # fmt: skip
def test_tessera_json_paths_stay_in_the_artifact(
    artifact: Path, tmp_path: Path, change: Callable[[Any], None], field: str, phrase: str
) -> None:
    out = Path(shutil.copytree(artifact, tmp_path / "art"))
    edit_json(out / "tessera.json", change)
    result = run_tool("tessera_run", out, "--target", "reference", "--input-ids", "1", ok=False)
    assert_one_line_error(result, str(out / "tessera.json"), f"field '{field}'", phrase)


def test_tokenizer_path_stays_in_the_artifact(artifact: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(artifact, tmp_path / "art"))
    (tmp_path / "secret.json").write_text("{}")
    edit_json(out / "tessera.json", lambda m: m.__setitem__("tokenizer", "../secret.json"))
    result = run_tool("tessera_run", out, "--target", "reference", "--prompt", "hi", ok=False)
    assert_one_line_error(result, "field 'tokenizer'", "leads outside")


def test_artifact_file_refuses_links_out_and_x86_fields_are_named(artifact: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(artifact, tmp_path / "art"))
    (tmp_path / "outside.so").write_bytes(b"\x7fELF")
    (out / "x86").mkdir()
    (out / "x86" / "kernels.so").symlink_to(tmp_path / "outside.so")
    (out / "x86" / "program.json").write_text(json.dumps({"format": "tessera-x86-program", "format_version": 1}))
    loaded = read_artifact(out)
    with pytest.raises(TesseraError, match=r"field 'targets\.x86\.libraries\.generic': path 'x86/kernels\.so' leads"):
        loaded.file("x86/kernels.so", "targets.x86.libraries.generic")
    for bad in ("", "a\0b", "/x", "../x"):
        with pytest.raises(TesseraError, match=r"tessera\.json: field 'f'"):
            loaded.file(bad, "f")
    # Opening the artifact checks every path tessera.json names before any session reads one.
    manifest = json.loads((out / "tessera.json").read_text())
    manifest["targets"]["x86"] = {
        "program": "x86/program.json",
        "llvm_ir": "x86/kernels.ll",
        "libraries": {"avx512": "/lib.so"},
    }
    (out / "tessera.json").write_text(json.dumps(manifest))
    with pytest.raises(TesseraError, match=r"field 'targets\.x86\.libraries\.avx512': path '/lib\.so' is absolute"):
        read_artifact(out)


@pytest.mark.parametrize(
    ("change", "field", "phrase"),
    [
        (lambda m: m["shards"][0].__setitem__("file", "/etc/hosts"), "shards[0].file", "absolute"),
        (lambda m: m["shards"][0].__setitem__("file", "../hf/model.safetensors"), "shards[0].file", "leads outside"),
        (lambda m: next(iter(m["tensors"].values())).__setitem__("shard", "/x.safetensors"), ".shard", "not a listed shard"),
        (lambda m: next(iter(m["tensors"].values())).__setitem__("shard", ["x"]), ".shard", "not a listed shard"),
    ],
    ids=["shard-absolute", "shard-parent", "tensor-shard", "tensor-shard-list"],
)  # fmt: skip
def test_weights_manifest_paths_stay_in_the_directory(
    tessera_weights: Path, tmp_path: Path, change: Callable[[Any], None], field: str, phrase: str
) -> None:
    edit_json(tessera_weights / "manifest.json", change)
    with pytest.raises(TesseraError) as error:
        load_weights(tessera_weights)
    assert str(tessera_weights / "manifest.json") in str(error.value)
    assert field in str(error.value) and phrase in str(error.value)
    result = convert("--export", tessera_weights, "-o", tmp_path / "back")
    assert_one_line_error(result, field, phrase)


# --- export record --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        (lambda hf: hf["files"][0].__setitem__("file", "../evil.safetensors"), ["field 'hf.files[0].file'", "leads outside"]),
        (lambda hf: hf["files"][0].__setitem__("file", "/tmp/evil.safetensors"), ["field 'hf.files[0].file'", "absolute"]),
        (lambda hf: hf["files"][0].__setitem__("file", "."), ["field 'hf.files[0].file'", "not a file name"]),
        (lambda hf: hf["json_files"].__setitem__("../evil.json", "{}"), ["field 'hf.json_files' key '../evil.json'", "leads outside"]),
        (lambda hf: hf["files"][0].__setitem__("header", "{"), ["field 'hf.files[0].header'", "invalid JSON"]),
        (lambda hf: hf["files"][0].__setitem__("header", "[1]"), ["field 'hf.files[0].header'", "not a safetensors header"]),
        (lambda hf: hf["files"][0].__setitem__("header", "9" * 30), ["field 'hf.files[0].header'", "digits"]),
        (lambda hf: hf["files"][0].pop("header"), ["field 'hf.files[0].header'", "JSON text"]),
        (lambda hf: hf.__setitem__("files", {}), ["field 'hf.files'", "expected a list"]),
        (lambda hf: hf.__setitem__("prefix", "../"), ["field 'hf.prefix'"]),
        (lambda hf: hf.__setitem__("index_text", '{"weight_map": 3}'), ["field 'hf.index_text'", "no weight_map"]),
    ],
    ids=["file-parent", "file-absolute", "file-dot", "json-parent", "header-json", "header-list", "header-int",
         "header-missing", "files-type", "prefix", "index"],
)  # fmt: skip
def test_export_record_is_checked(
    tessera_weights: Path, tmp_path: Path, change: Callable[[Any], None], phrases: list[str]
) -> None:
    edit_json(tessera_weights / "manifest.json", lambda m: change(m["hf"]))
    result = convert("--export", tessera_weights, "-o", tmp_path / "back")
    assert_one_line_error(result, str(tessera_weights / "manifest.json"), *phrases)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tessera"]


def _retype_first_tensor(hf: dict[str, Any]) -> None:
    header = json.loads(hf["files"][0]["header"])
    name = next(k for k in header if k != "__metadata__")
    header[name]["dtype"] = "I32"
    hf["files"][0]["header"] = json.dumps(header)


def test_export_header_must_describe_the_stored_tensor(tessera_weights: Path, tmp_path: Path) -> None:
    edit_json(tessera_weights / "manifest.json", lambda m: _retype_first_tensor(m["hf"]))
    result = convert("--export", tessera_weights, "-o", tmp_path / "back")
    assert_one_line_error(result, "field 'hf.files[0]", "is I32", "the shard holds F32")


# --- outputs never replace or sit in an input -------------------------------------------------------------


@pytest.mark.parametrize("where", ["same", "inside", "parent", "alias"])
@pytest.mark.parametrize("export", [False, True], ids=["convert", "export"])
def test_convert_never_writes_over_its_source(
    hf: Path, tessera_weights: Path, tmp_path: Path, where: str, export: bool
) -> None:
    source = tessera_weights if export else hf
    (tmp_path / "alias").symlink_to(source)
    out = {"same": source, "inside": source / "sub", "parent": tmp_path, "alias": tmp_path / "alias"}[where]
    before = tree_digest(tmp_path)
    args = ["--export"] if export else []
    result = convert(*args, source, "-o", out, "--force")
    phrase = {"same": "is the input", "inside": "lies inside the input", "parent": "holds the input"}
    assert_one_line_error(result, f"-o {out}", phrase.get(where, "is the input"))
    assert tree_digest(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias", "hf", "tessera"]


def test_compile_never_writes_over_its_model(hf: Path, tmp_path: Path) -> None:
    yaml = Path(shutil.copy(TINY, tmp_path / "model.yaml"))
    before = tree_digest(tmp_path)
    assert_one_line_error(run_tool("tessera_compile", hf, "-o", hf, ok=False), "is the input")
    assert_one_line_error(run_tool("tessera_compile", hf, "-o", tmp_path, ok=False), "holds the input")
    assert_one_line_error(run_tool("tessera_compile", yaml, "-o", tmp_path, ok=False), "holds the input")
    result = run_tool("tessera_compile", yaml, "--emit", "graph", "-o", yaml, ok=False)
    assert_one_line_error(result, f"-o {yaml}", "is the input")
    assert tree_digest(tmp_path) == before


def test_replacing_an_output_keeps_a_leftover_backup_name(tmp_path: Path) -> None:
    # The previous build is moved aside under a fresh name: a file at the old fixed name survives.
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    leftover = tmp_path / ".out.old"
    leftover.mkdir()
    (leftover / "precious.txt").write_text("mine")
    with staged_directory(out, lambda _: None) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert (leftover / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old", "out"]
    with (
        pytest.raises(TesseraError, match="is the input"),
        staged_directory(tmp_path / "in", lambda _: None, [tmp_path / "in"]),
    ):
        pass

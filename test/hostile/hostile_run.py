"""The hostile-input suite's runner: each case runs one Tessera CLI on files it has made hostile, in a box.

A box is one case's folders under its tmp_path:
    in/          what the tool is given (checked unchanged after the run)
    zz_outside/  what the hostile input points at: valid files whose use would change the outcome; never to
                 be read or written (checked by the audit log and unchanged after the run)
    <out>        the output folders the case names (box.out()); a tool may write there and in their hidden
                 staging siblings (.<name>.*), as staging.py does
    tmp/         TMPDIR and HOME of the run

`box.run(tool, *args)` runs the tool as a user would (`python -m tessera.tools.<tool>`), through
hostile_audit.py, in a subprocess with a timeout and rlimits (address space, CPU, file size, no core
file), so a resource bomb or a native crash ends the case instead of the suite. Then:
    refused(outcome, *phrases)  a non-zero exit, not a signal; exactly one non-empty stderr line holding
                                every phrase (the file, field, tensor or option to name); no traceback;
                                nothing read or written outside the allowed folders; inputs unchanged
    succeeded(outcome)          exit 0, and the same containment
Every problem of a case is reported together, the first line summarising them, so a failing run reads as
a list of one line per case.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import shutil
import signal
import site
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_IFMT, S_ISREG
from typing import Any

import pytest

SUITE = Path(__file__).resolve().parent
AUDIT = SUITE / "hostile_audit.py"
ROOT = SUITE.parent.parent  # the repository root is the `tessera` package
TINY_YAML = ROOT / "configs" / "nemotron_h_tiny.yaml"
TOOLS = {
    "tessera-compile": "tessera.tools.tessera_compile",
    "tessera-run": "tessera.tools.tessera_run",
    "tessera-convert": "tessera.tools.tessera_convert",
    "tessera-opt": "tessera.tools.tessera_opt",
}

# Bounds of every run. The tiny model compiles and runs in ~120 MB resident and well under 4 GiB of
# address space with the MLIR bindings and llvmlite loaded (test_hostile_baseline checks it), so a tool that
# reads a huge input whole runs out of address space here and must still end in one line naming the file.
TIMEOUT_S = 120
REBUILD_TIMEOUT_S = 400  # cases whose correct outcome is to rebuild every cached kernel (a cold compile)
ADDRESS_SPACE = 4 << 30
CPU_SECONDS = 360
FILE_BYTES = 1 << 30
HUGE_BYTES = 6 << 30  # a sparse input larger than the address space: reading it whole cannot succeed
PROMPT_IDS = "5,7,9"
NEW_TOKENS = "4"


def _limits() -> None:
    """preexec_fn: the child's bounds (in the forked child, before exec)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 10))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


@functools.cache
def system_read_roots() -> tuple[str, ...]:
    """What any run may read: the Python installation and venv, the import path, the tessera package, /proc,
    /sys, /dev."""
    import tessera

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), os.path.dirname(tessera.__file__)}
    roots |= {os.path.dirname(os.path.dirname(_real(sys.executable)))}
    # the import path (PYTHONPATH): the import system lists its folders
    roots |= {entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry}
    return tuple(sorted({_real(r) for r in roots} | {"/proc", "/sys", "/dev"}))


def shared_cache() -> Path:
    """The kernel / JIT cache the suite shares (conftest.py sets TESSERA_CACHE_DIR for the test run)."""
    return Path(os.environ["TESSERA_CACHE_DIR"])


def _inside(path: str, roots: list[str] | tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


# --- fingerprints: inputs and the outside folder must be byte-identical after a run -----------------------

SMALL_FILE = 64 << 20


def fingerprint(folder: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under `folder` (links not followed): a link's target, a file's size and hash (a huge sparse
    file: size, mtime and the hash of its first and last MiB)."""
    prints: dict[str, tuple[object, ...]] = {}
    if not folder.exists():
        return prints
    for directory, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(directory) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                prints[key] = ("link", os.readlink(path))
            elif path.is_dir():
                prints[key] = ("dir",)
            else:
                prints[key] = _file_print(path)
    return prints


def _file_print(path: Path) -> tuple[object, ...]:
    stat = path.stat()
    if not S_ISREG(stat.st_mode):  # a FIFO a case planted: opening it would block the test itself
        return ("special", S_IFMT(stat.st_mode))
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        if stat.st_size <= SMALL_FILE:
            digest.update(handle.read())
            return (stat.st_size, digest.hexdigest())
        digest.update(handle.read(1 << 20))
        handle.seek(-(1 << 20), os.SEEK_END)
        digest.update(handle.read())
    return (stat.st_size, stat.st_mtime_ns, digest.hexdigest())


def _changes(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> list[str]:
    changed = [k for k in before if k in after and before[k] != after[k]]
    return (
        [f"removed {k}" for k in before if k not in after]
        + [f"added {k}" for k in after if k not in before]
        + [f"changed {k}" for k in changed]
    )


# --- the box and its runs ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    tool: str
    args: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    violations: list[str]  # files read or written outside the allowed folders
    changes: list[str]  # inputs or outside files changed by the run
    log: Path  # the audit log: one JSON line per file event

    def opened(self) -> list[str]:
        """Every path the run opened, listed or loaded (resolved), in order."""
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [entry["resolved"] for entry in entries if "resolved" in entry]

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-6:])
        return f"$ {self.tool} {' '.join(self.args)}\n--- stderr (tail) ---\n{tail}\n--- stdout (tail) ---\n{self.stdout[-400:]}"


@dataclass
class Box:
    root: Path
    cache: Path = field(default_factory=shared_cache)

    def __post_init__(self) -> None:
        self.root = Path(_real(self.root))
        self.inputs = self.root / "in"
        self.outside = self.root / "zz_outside"
        self.tmp = self.root / "tmp"
        for folder in (self.inputs, self.outside, self.tmp / "home"):
            folder.mkdir(parents=True, exist_ok=True)
        self.outputs: list[Path] = []
        self.read_roots: list[Path] = [self.inputs]  # narrowed by cases whose input folder is smaller
        self._runs = 0

    def out(self, name: str = "out") -> Path:
        """An output folder the tool may write (it need not exist)."""
        path = self.root / name
        self.allow_output(path)
        return path

    def allow_output(self, path: Path) -> Path:
        self.outputs.append(Path(_real(path)))
        return path

    def copy_in(self, source: Path, name: str | None = None) -> Path:
        return _copy(source, self.inputs / (name or source.name))

    def copy_outside(self, source: Path, name: str | None = None) -> Path:
        return _copy(source, self.outside / (name or source.name))

    def run(self, tool: str, *args: object, env: dict[str, str] | None = None, timeout: int = TIMEOUT_S) -> Outcome:
        self._runs += 1
        log = self.root / f"audit-{self._runs}.jsonl"
        before = {"in": fingerprint(self.inputs), "zz_outside": fingerprint(self.outside)}
        argv = [str(a) for a in args]
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "HF_", "XDG_"))}
        environment.update(
            TESSERA_CACHE_DIR=str(self.cache),
            TMPDIR=str(self.tmp),
            HOME=str(self.tmp / "home"),
            HF_HUB_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONDONTWRITEBYTECODE="1",  # no __pycache__ written into the package by the child
        )
        environment.update(env or {})
        try:
            result = subprocess.run(
                [sys.executable, str(AUDIT), str(log), TOOLS[tool], *argv],
                cwd=self.tmp,
                env=environment,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                preexec_fn=_limits,
                stdin=subprocess.DEVNULL,
            )
            returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
        except subprocess.TimeoutExpired as exc:
            returncode = None
            stdout, stderr = _text(exc.stdout), _text(exc.stderr)
        after = {"in": fingerprint(self.inputs), "zz_outside": fingerprint(self.outside)}
        changes = [f"{where}/: {c}" for where in before for c in _changes(before[where], after[where])]
        return Outcome(tool, argv, returncode, stdout, stderr, self.violations(log), changes, log)

    # --- what the audit log may show ------------------------------------------------------------------
    def violations(self, log: Path) -> list[str]:
        writable = [str(p) for p in self.outputs] + [_real(self.tmp), _real(self.cache), "/dev"]
        readable = [_real(p) for p in self.read_roots] + writable + list(system_read_roots())
        staging = [str(p.parent / f".{p.name}.") for p in self.outputs]  # staging.py's hidden siblings
        found: list[str] = []
        if not log.exists():
            return ["no audit log (the wrapper did not start)"]
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if "argv" in entry:
                for arg in entry["argv"]:
                    if arg.startswith("/") and not _inside(_real(arg), readable) and not _staged(_real(arg), staging):
                        found.append(f"{entry['event']} names {self.short(_real(arg))}")
                continue
            if "resolved" not in entry:
                found.append(f"audit hook error on {entry}")
                continue
            path = entry["resolved"]
            if entry["write"]:
                ok = _inside(path, writable) or _staged(path, staging)
                # mkdir -p of an output's existing ancestors is harmless
                ok = ok or (entry["event"] == "os.mkdir" and any(_inside(w, [path]) for w in writable))
            else:
                ok = _inside(path, readable) or _staged(path, staging)
            if not ok:
                where = " (the outside folder)" if _inside(path, [str(self.outside)]) else ""
                verb = "wrote" if entry["write"] else "read"
                found.append(f"{verb} {self.short(path)}{where} [{entry['event']}]")
        return list(dict.fromkeys(found))

    def short(self, path: str) -> str:
        """A path as the box names it (relative to its root), for one-line reports."""
        return os.path.relpath(path, self.root) if _inside(path, [str(self.root)]) else path


def _staged(path: str, prefixes: list[str]) -> bool:
    return any(path.startswith(prefix) for prefix in prefixes)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _copy(source: Path, target: Path) -> Path:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return target


# --- the checks ----------------------------------------------------------------------------------------------


def _status(outcome: Outcome) -> str | None:
    if outcome.returncode is None:
        return "timed out"
    if outcome.returncode < 0:
        return f"killed by {signal.Signals(-outcome.returncode).name}"
    return None


def _containment(outcome: Outcome) -> list[str]:
    problems = []
    if outcome.violations:
        more = f" (+{len(outcome.violations) - 3} more)" if len(outcome.violations) > 3 else ""
        problems.append("outside the allowed folders: " + "; ".join(outcome.violations[:3]) + more)
    if outcome.changes:
        problems.append("changed its inputs: " + "; ".join(outcome.changes[:3]))
    return problems


def _fail(problems: list[str], outcome: Outcome) -> None:
    summary = " | ".join(problems)
    pytest.fail(f"{summary}\n{outcome.describe()}", pytrace=False)


Phrase = str | tuple[str, ...]  # a phrase, or alternatives of which the line must hold one


def _holds(line: str, phrase: Phrase) -> bool:
    return any(p in line for p in ((phrase,) if isinstance(phrase, str) else phrase))


def refused(outcome: Outcome, *phrases: Phrase) -> None:
    """The rule for hostile input: refused in one line naming what is wrong; contained; inputs unchanged."""
    problems = []
    status = _status(outcome)
    if status is not None:
        problems.append(status)
    elif outcome.returncode == 0:
        problems.append("exit 0 (accepted the hostile input)")
    if "Traceback" in outcome.stderr:
        last = outcome.lines[-1] if outcome.lines else ""
        problems.append(f"traceback: {last[:160]}")
    elif status is None and outcome.returncode != 0:
        if len(outcome.lines) != 1:
            problems.append(f"{len(outcome.lines)} stderr lines, not 1")
        else:
            missing = [p for p in phrases if not _holds(outcome.lines[0], p)]
            if missing:
                problems.append(f"line does not name {missing}: {outcome.lines[0][:200]}")
    problems += _containment(outcome)
    if problems:
        _fail(problems, outcome)


def succeeded(outcome: Outcome) -> Outcome:
    """The rule for input the tools must accept (caches they must rebuild, the baseline): exit 0, contained."""
    problems = []
    status = _status(outcome)
    if status is not None:
        problems.append(status)
    elif outcome.returncode != 0:
        line = outcome.lines[-1] if outcome.lines else ""
        problems.append(f"exit {outcome.returncode} (expected success): {line[:200]}")
    problems += _containment(outcome)
    if problems:
        _fail(problems, outcome)
    return outcome


def tokens_of(outcome: Outcome) -> list[int]:
    return list(json.loads(outcome.stdout.strip().splitlines()[-1])["tokens"])


# --- shared builds: made once per test session, copied into each box ------------------------------------


@functools.cache
def session_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="tessera-hostile-"))
    import atexit

    atexit.register(shutil.rmtree, path, True)
    return path


def _build(tool: str, *args: object) -> subprocess.CompletedProcess[str]:
    from conftest import run_tool

    return run_tool(tool.replace("-", "_"), *args)


@dataclass(frozen=True)
class Built:
    """A compiled artifact and what it produced on the baseline prompt (the outcome hostile input changes)."""

    path: Path
    targets: tuple[str, ...]
    tokens: dict[str, list[int]]  # by target


def has_mlir() -> bool:
    from conftest import HAS_MLIR

    return HAS_MLIR


# The one skip of the suite: cases that run the x86 target where its toolchain is absent.
NEEDS_X86 = pytest.mark.skipif(not has_mlir(), reason="the x86 target needs the MLIR 22 / llvmlite toolchain")


def compiled_targets() -> tuple[str, ...]:
    return ("x86", "reference") if has_mlir() else ("reference",)


def _compile(model: Path, out: Path) -> Built:
    targets = compiled_targets()
    _build("tessera-compile", model, *[a for t in targets for a in ("--target", t)], "-o", out, "-q")
    tokens = {}
    for target in targets:
        result = _build(
            "tessera-run", out, "--target", target, "--input-ids", PROMPT_IDS, "--max-new-tokens", NEW_TOKENS, "--json"
        )
        tokens[target] = json.loads(result.stdout.strip().splitlines()[-1])["tokens"]
    return Built(out, targets, tokens)


@functools.cache
def tiny_artifact() -> Built:
    """configs/nemotron_h_tiny.yaml compiled (weights drawn from a seed at run time)."""
    return _compile(TINY_YAML, session_dir() / "tiny")


def tiny_hf_fields() -> dict[str, Any]:
    """nemotron_h_tiny.yaml's model as NemotronHConfig fields: a checkpoint of the same shapes compiles to the
    same kernels, so the kernel and JIT caches the tiny artifact warmed serve it too."""
    import yaml

    raw = yaml.safe_load(TINY_YAML.read_text())
    return {k: v for k, v in raw.items() if k not in ("name", "compile", "dtype")}


WORDS = ["[UNK]", "hello", "world", "the", "capital", "of", "france", "is"]


def write_tokenizer(path: Path) -> Path:
    """A small word-level tokenizer.json (ids well inside the tiny vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i + 3 for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


@functools.cache
def hf_checkpoint() -> Path:
    """A random single-file HF checkpoint of the tiny model, with a tokenizer.json."""
    from conftest import base_seed, derive_seed, make_hf_checkpoint

    fields_ = tiny_hf_fields()
    seed = derive_seed(base_seed(), "hostile/hf")
    path = make_hf_checkpoint(session_dir() / "hf", seed, fields_.pop("hybrid_override_pattern"), **fields_)
    write_tokenizer(path / "tokenizer.json")
    return path


@functools.cache
def hf_sharded() -> Path:
    """The same model saved in several shards with a model.safetensors.index.json."""
    from conftest import base_seed, derive_seed, make_hf_checkpoint

    fields_ = tiny_hf_fields()
    seed = derive_seed(base_seed(), "hostile/hf")  # the same model as hf_checkpoint(), in shards
    return make_hf_checkpoint(
        session_dir() / "hf_sharded", seed, fields_.pop("hybrid_override_pattern"), shard="300KB", **fields_
    )


@functools.cache
def checkpoint_artifact() -> Built:
    """hf_checkpoint() compiled: an artifact with weights/ (Tessera's layout) and tokenizer.json."""
    return _compile(hf_checkpoint(), session_dir() / "ckpt_artifact")


# --- tampering helpers ---------------------------------------------------------------------------------------


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Rewrite a JSON file after `change(data)` (which mutates data, or returns a replacement)."""
    data = load_json(path)
    replaced = change(data)
    path.write_text(json.dumps(data if replaced is None else replaced, indent=1) + "\n")


def file_record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def rerecord(artifact: Path, relative: str, actual: Path | None = None) -> None:
    """Where tessera.json records its files' hashes (format 2: `files` {path: {sha256, bytes}}), record
    `relative` as holding `actual`'s bytes (default: the file at that path) — a tampering that keeps the
    artifact's own bookkeeping consistent, so only validation of the content itself can refuse it."""
    manifest_path = artifact / "tessera.json"
    manifest = load_json(manifest_path)
    files = manifest.get("files")
    if not isinstance(files, dict):
        return
    files[relative] = file_record(actual if actual is not None else artifact / relative)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


def safetensors_header(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def write_safetensors_header(path: Path, header: dict[str, Any] | bytes, body: bytes) -> None:
    """A safetensors file of `header` (a dict, or raw header bytes, possibly hostile) and `body`."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def relabel_tensor(path: Path, tensor: str, dtype: str) -> None:
    """Give `tensor` another dtype in a safetensors header, its bytes unchanged."""
    header, body = safetensors_header(path)
    header[tensor]["dtype"] = dtype
    write_safetensors_header(path, header, body)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_to(path: Path, size: int) -> None:
    os.truncate(path, size)


def make_huge(path: Path, prefix: bytes = b"") -> Path:
    """A sparse file of HUGE_BYTES (free on disk) starting with `prefix`: reading it whole cannot succeed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(prefix)
        handle.truncate(HUGE_BYTES)
    return path


DEPTH = 100_000


def deep_json() -> str:
    return "[" * DEPTH + "]" * DEPTH


def deep_yaml() -> str:
    return "[" * DEPTH + "]" * DEPTH


BIG_INT = "9" * 5000


def with_field(text: str, key: str, raw_value: str) -> str:
    """A JSON object's text with `"key": raw_value` added first (raw_value is JSON text, possibly hostile)."""
    start = text.index("{") + 1
    return text[:start] + f'"{key}": {raw_value}, ' + text[start:]


def hub_snapshot(box: Box) -> Path:
    """The snapshot folder of hub_repo's repo (its links are relative to it)."""
    return box.inputs / "hub" / "models--org--tiny" / "snapshots" / ("0" * 40)


def hub_repo(box: Box, checkpoint: Path, links: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A Hugging Face Hub cache under box.inputs/hub holding `checkpoint` as repo org/tiny, laid out as
    huggingface_hub lays it out: blobs/<sha256>, snapshots/<revision>/<name> -> ../../blobs/<sha256>,
    refs/main. `links` replaces the target of some snapshot links. Returns (cache, the repo's folder)."""
    snapshot = hub_snapshot(box)
    repo = snapshot.parent.parent
    hub = repo.parent
    for folder in (repo / "blobs", repo / "refs", snapshot):
        folder.mkdir(parents=True)
    (repo / "refs" / "main").write_text(snapshot.name)
    for file in sorted(checkpoint.iterdir()):
        blob = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, repo / "blobs" / blob)
        (snapshot / file.name).symlink_to((links or {}).get(file.name, f"../../blobs/{blob}"))
    return hub, repo

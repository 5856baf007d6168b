"""Where a model comes from: every source ends in the same `ModelSpec` (model/config.py validates it).

A config comes from three places, all ending in the same `ModelSpec`:
  * a Tessera model.yaml (Hugging Face config.json field names at the top level, plus a
    `compile:` section and optional `weights:` and `tokenizer:` paths, relative to the yaml's
    folder and resolving inside it),
  * a Hugging Face checkpoint directory (config.json with `hybrid_override_pattern` or
    `layers_block_type`; `save_pretrained` writes only the latter),
  * a Hub repo id, resolved through `huggingface_hub.snapshot_download` (honours
    HF_HUB_OFFLINE and the local cache); its files must resolve inside the repo's folder of the cache.

Every inconsistency raises `ConfigError` with one line naming the file and the field.
Semantics follow transformers' `NemotronHConfig` defaults wherever a field is absent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tessera.errors import TesseraError
from tessera.model.config import ConfigError, ModelSpec, compile_options_from_dict, config_from_dict, field_error
from tessera.safe_io import contained_path, read_json, read_yaml

_YAML_SECTIONS = {"name", "compile", "weights", "tokenizer"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    def hooks(obj: dict[str, Any]) -> Any:
        # transformers 5 writes infinities as {"__float__": "Infinity"}.
        if set(obj) == {"__float__"}:
            return float(obj["__float__"])
        return obj

    data = read_json(path, error=ConfigError, allow_constants=True, object_hook=hooks)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def checkpoint_root(directory: Path) -> Path:
    """The folder a checkpoint directory's files must resolve inside: the directory itself or, for a
    snapshot of the Hugging Face Hub cache (models--org--name/snapshots/<revision>), the repo's folder,
    since a snapshot is a folder of links into the repo's blobs/."""
    directory = Path(directory).absolute()
    if directory.parent.name == "snapshots" and directory.parent.parent.name.startswith("models--"):
        return directory.parent.parent
    return directory


def checkpoint_file(
    root: Path, directory: Path, name: object, source: str, *, error: type[TesseraError] = ConfigError
) -> Path:
    """`directory / name`, refused unless `name` is a relative path that resolves, symlinks followed,
    inside `root` (which holds `directory`). The path is returned unresolved, as messages should name it."""
    offset = os.path.relpath(Path(directory).absolute(), Path(root).absolute())
    relative = name
    # Only a name contained_path would take as relative is joined; any other reaches it as given, refused.
    if isinstance(name, str) and name and not os.path.isabs(name) and not name.startswith("~") and offset != ".":
        relative = os.path.join(offset, name)
    contained_path(root, relative, source, error=error)
    return Path(directory) / str(name)


def load_hf_directory(directory: Path, source: str | None = None, root: Path | None = None) -> ModelSpec:
    """The model of an HF checkpoint directory; `root`: the folder its files must resolve inside
    (default: checkpoint_root(directory))."""
    root = checkpoint_root(directory) if root is None else Path(root)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{directory}: not a Hugging Face checkpoint (no config.json)")
    checkpoint_file(root, directory, config_path.name, str(config_path))
    raw = _read_json(config_path)
    config = config_from_dict(raw, str(config_path), strict=False)
    has_weights = any(directory.glob("*.safetensors")) or any(directory.glob("*.bin")) or any(directory.glob("*.pt"))
    tokenizer = directory / "tokenizer.json"
    if tokenizer.is_file():
        checkpoint_file(root, directory, tokenizer.name, str(tokenizer))
    return ModelSpec(
        config=config,
        compile=compile_options_from_dict(None, str(config_path), config),
        name=directory.name,
        source=source or str(directory),
        weights_dir=directory if has_weights else None,
        tokenizer_path=tokenizer if tokenizer.is_file() else None,
        root=root,
    )


def load_yaml(path: Path) -> ModelSpec:
    raw = read_yaml(path, error=ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    source = str(path)
    model_fields = {k: v for k, v in raw.items() if k not in _YAML_SECTIONS}
    config = config_from_dict(model_fields, source, strict=True)
    weights_dir = tokenizer = None
    # Paths in a model.yaml are relative to its folder and stay inside it, symlinks followed.
    if raw.get("weights") is not None:
        weights_dir = contained_path(path.parent, raw["weights"], f"{source}: field 'weights'", error=ConfigError)
        if not weights_dir.is_dir():
            raise field_error(source, "weights", f"no such directory: {weights_dir}")
    if raw.get("tokenizer") is not None:
        tokenizer = contained_path(path.parent, raw["tokenizer"], f"{source}: field 'tokenizer'", error=ConfigError)
        if not tokenizer.is_file():
            raise field_error(source, "tokenizer", f"no such file: {tokenizer}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str):
        raise field_error(source, "name", f"expected a string, got {name!r}")
    return ModelSpec(
        config=config,
        compile=compile_options_from_dict(raw.get("compile"), source, config),
        name=name,
        source=source,
        weights_dir=weights_dir,
        tokenizer_path=tokenizer,
        root=None if weights_dir is None else checkpoint_root(weights_dir),
    )


def resolve_hub_repo(repo_id: str) -> tuple[Path, Path]:
    """Download (or find in the local cache) the files Tessera needs from a Hub repo: the snapshot
    directory, and the repo's folder of the cache that every file of the snapshot must resolve inside."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(
            repo_id,
            allow_patterns=["*.json", "*.safetensors", "tokenizer*"],
            cache_dir=_hub_cache_dir(),
            local_files_only=_hub_offline(),
        )
    except LocalEntryNotFoundError:
        raise ConfigError(
            f"{repo_id}: not in the local Hugging Face cache and the Hub is offline (HF_HUB_OFFLINE)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{repo_id}: cannot fetch from the Hugging Face Hub: {first_line}") from None
    snapshot = Path(path).absolute()
    # snapshot_download answers <cache>/models--org--name/snapshots/<revision>; anything else is held to
    # itself (checkpoint_root of a directory outside that layout).
    return snapshot, checkpoint_root(snapshot)


def _hub_cache_dir() -> str | None:
    # Read at call time: huggingface_hub fixes its defaults when first imported.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_model(source: str | os.PathLike[str]) -> ModelSpec:
    """Load a model.yaml, an HF checkpoint directory, or a Hub repo id."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return load_hf_directory(path)
    if path.exists():  # a FIFO or device too: the reader refuses it by name
        if path.suffix in {".yaml", ".yml"}:
            return load_yaml(path)
        if path.name == "config.json":
            return load_hf_directory(path.parent)
        raise ConfigError(f"{path}: not a model.yaml, config.json or checkpoint directory")
    if _HUB_ID.match(text) and not text.endswith((".yaml", ".yml")):
        snapshot, root = resolve_hub_repo(text)
        return load_hf_directory(snapshot, source=text, root=root)
    raise ConfigError(f"{text}: no such file or directory")

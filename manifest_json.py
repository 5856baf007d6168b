"""Reading Tessera's versioned JSON manifests (artifacts, weight directories) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.errors import TesseraError
from tessera.safe_io import read_json


def read_manifest_json(
    path: Path, format_name: str, version: int, error: type[TesseraError], missing: str
) -> dict[str, Any]:
    """The manifest at `path`, checked for its format name and version; `missing` explains an absent file."""
    if not path.is_file():
        raise error(f"{path.parent}: {missing}")
    data = read_json(path, error=error)
    if not isinstance(data, dict) or data.get("format") != format_name:
        raise error(f"{path}: not a {format_name} manifest")
    if data.get("format_version") != version:
        raise error(f"{path}: format_version {data.get('format_version')!r}, this Tessera reads {version}")
    return data

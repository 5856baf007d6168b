"""Reading Tessera's versioned JSON manifests (artifacts, weight directories) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.errors import TesseraError
from tessera.safe_io import MAX_JSON_BYTES, read_json


def read_manifest_json(
    path: Path,
    format_name: str,
    version: int,
    error: type[TesseraError],
    missing: str,
    stale: str | None = None,
    max_bytes: int = MAX_JSON_BYTES,
) -> dict[str, Any]:
    """The manifest at `path`, checked for its format name and version; `missing` explains an absent file,
    `stale` one of an older version (what to do about it)."""
    if not path.exists():
        raise error(f"{path.parent}: {missing}")
    data = read_json(path, error=error, max_bytes=max_bytes)
    if not isinstance(data, dict) or data.get("format") != format_name:
        raise error(f"{path}: not a {format_name} manifest")
    found = data.get("format_version")
    if found != version:
        older = stale is not None and isinstance(found, int) and not isinstance(found, bool) and found < version
        advice = f": {stale}" if older else ""
        raise error(f"{path}: format_version {found!r}, this Tessera reads {version}{advice}")
    return data

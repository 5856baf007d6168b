"""tessera-convert: Hugging Face safetensors checkpoints <-> Tessera's weight layout.

tessera-convert ./hf-checkpoint -o weights/            # or a Hub repo id
tessera-convert --export weights/ -o ./hf-again        # bit-exact, byte-identical files
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import click

from tessera.errors import TesseraError
from tessera.tools.cli_common import OneLineCommand, one_line_errors

TOOL = "tessera-convert"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_UNITS.update({"TB": 10**12, "TIB": 2**40})
# A decimal number and a unit; no sign, exponent, inf or nan. Few digits: a size, not a digit bomb.
_SIZE = re.compile(r"(\d{1,20}(?:\.\d{0,20})?|\.\d{1,20})\s*([A-Za-z]{0,3})")
# Shard sizes are byte offsets in safetensors headers and the manifest, read back within int64.
MAX_SHARD_BYTES = 2**63 - 1


def parse_size(text: str) -> int:
    """'2GB', '500MiB', '1.5 GB', '4096' -> bytes; one line naming --shard-size otherwise."""
    match = _SIZE.fullmatch(text.strip())
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise TesseraError(f"--shard-size: not a size: {text!r} (e.g. 2GB, 500MiB)")
    value = int(Fraction(match.group(1)) * _UNITS[unit])  # exact: no float rounding of 2.3GB
    if value <= 0:
        raise TesseraError(f"--shard-size: must be at least 1 byte, got {text!r}")
    if value > MAX_SHARD_BYTES:
        raise TesseraError(f"--shard-size: {text!r} is more than {MAX_SHARD_BYTES} bytes")
    return value


@click.command(TOOL, cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Directory to write.")
@click.option("--export", is_flag=True, help="SOURCE is a Tessera weight directory: write it back as HF files.")
@click.option("--shard-size", default="2GB", show_default=True, help="Largest Tessera shard.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Replace a non-empty output directory.")
@one_line_errors(TOOL)
def main(source: str, out: Path, export: bool, shard_size: str, no_progress: bool, force: bool) -> None:
    """Convert SOURCE (an HF checkpoint directory or Hub repo id) into Tessera's weight layout.

    -o must lie apart from SOURCE (not SOURCE, not inside it, not holding it), --force or not: the
    command never deletes or writes into its input.
    """
    from tessera.frontend.checkpoint import convert_checkpoint, export_checkpoint

    if export:
        export_checkpoint(Path(source), out, overwrite=force)
        click.echo(f"wrote {out}", err=True)
        return
    from tessera.frontend.config import load_model

    shard_bytes = parse_size(shard_size)  # a bad option is refused before any file is read
    spec = load_model(source)
    if spec.weights_dir is None:
        raise TesseraError(f"{source}: no weights to convert (no *.safetensors beside config.json)")
    manifest = convert_checkpoint(
        spec.weights_dir,
        out,
        spec.config,
        shard_bytes,
        progress=not no_progress,
        overwrite=force,
        root=spec.root,
    )
    ignored = manifest["hf"]["ignored"]
    if ignored:
        click.echo(
            f"{TOOL}: note: left out {len(ignored)} tensor(s) transformers does not load, e.g. {ignored[0]}", err=True
        )
    click.echo(f"wrote {out}: {len(manifest['tensors'])} tensors in {len(manifest['shards'])} shard(s)", err=True)


if __name__ == "__main__":
    main()

"""tessera-compile: a model.yaml, HF checkpoint directory or Hub repo id -> a self-contained artifact.

tessera-compile configs/nemotron_h_tiny.yaml --target reference -o out/tiny
tessera-compile ./hf-checkpoint -o out/ckpt              # converts and validates the weights
tessera-compile configs/nemotron_nano_12b_v2_base.yaml --target rocdl --arch gfx90a -o out/12b-mi200
tessera-compile nvidia/NVIDIA-Nemotron-Nano-12B-v2-Base --emit=graph   # Graph-IR on stdout
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from tessera.errors import TesseraError
from tessera.model.config import ModelSpec, check_compile_options
from tessera.targets import emittable_stages
from tessera.targets.backend import Backend
from tessera.targets.compiler import Compiler
from tessera.tools.cli_common import POSITIVE_COUNT, SEED, OneLineCommand, one_line_errors

TOOL = "tessera-compile"


def _progress(step: int, total: int, message: str, quiet: bool) -> None:
    if not quiet:
        click.echo(f"[{step}/{total}] {message}", err=True)


@click.command(TOOL, cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="Artifact directory to write.")
@click.option("--target", "targets", multiple=True, help="Target to build (repeatable); default: compile.targets.")
@click.option(
    "--emit",
    type=click.Choice(emittable_stages()),
    help="Stop after this stage and print its IR (to -o if given); stages past graph need one compiled target.",
)
@click.option("--dump-ir", type=click.Path(path_type=Path), help="Write every stage's IR into this directory.")
@click.option("--max-seq-len", type=POSITIVE_COUNT, help="Override compile.max_seq_len.")
@click.option("--batch", type=POSITIVE_COUNT, help="Override compile.batch.")
@click.option(
    "--arch", help="The GPU a GPU target builds for (rocdl: gfx942, gfx90a; nvvm: sm_90a); overrides compile.arch."
)
@click.option(
    "--precision", type=click.Choice(["fp32", "bf16"]), help="Override compile.precision (default: from dtype)."
)
@click.option(
    "--ssm-state-dtype",
    type=click.Choice(["float32", "bfloat16"]),
    help="Override compile.ssm_state_dtype (bfloat16 halves the Mamba state).",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(["float32", "bfloat16"]),
    help="Override compile.kv_cache_dtype (bfloat16 halves the KV cache).",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Seed for weights drawn at run time when the model names none.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@one_line_errors(TOOL)
def main(
    model: str,
    out: Path | None,
    targets: tuple[str, ...],
    emit: str | None,
    dump_ir: Path | None,
    max_seq_len: int | None,
    batch: int | None,
    arch: str | None,
    precision: str | None,
    ssm_state_dtype: str | None,
    kv_cache_dtype: str | None,
    seed: int,
    quiet: bool,
) -> None:
    """Compile MODEL (model.yaml, HF checkpoint directory, or Hub repo id) for one or more targets."""
    from tessera.frontend.config import load_model

    spec = load_model(model)
    given = {
        "max_seq_len": max_seq_len,
        "batch": batch,
        "arch": arch,
        "precision": precision,
        "ssm_state_dtype": ssm_state_dtype,
        "kv_cache_dtype": kv_cache_dtype,
    }
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if overrides:
        spec = replace(spec, compile=replace(spec.compile, **overrides))
        # The options' relations (the decode state's bytes) hold again with the overrides.
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in overrides)
        check_compile_options(spec.compile, f"{spec.source} with {flags}", spec.config)
    if emit is None and out is None:
        raise TesseraError("missing -o/--output (or use --emit=<stage> to print IR)")
    # Nothing the model is read from may be written over or into: the yaml, the checkpoint, its folder.
    from tessera.runtime.artifact import check_output_directory
    from tessera.staging import check_apart

    inputs = _model_inputs(model, spec)
    if dump_ir is not None:
        check_apart(dump_ir, inputs, option="--dump-ir")
    if emit is None and out is not None:
        check_output_directory(out, inputs)
    elif out is not None:
        check_apart(out, inputs)  # --emit writes one file
    from tessera.targets import get_backend

    backends = [get_backend(name) for name in (targets or spec.compile.targets)]
    for backend in backends:
        backend.check(spec)

    from tessera.frontend.graph_builder import build_graph

    steps = 1 if emit else 2 + len(backends) + (1 if spec.weights_dir else 0)
    _progress(1, steps, f"graph: building Graph-IR for {spec.name} ({spec.config.num_hidden_layers} layers)", quiet)
    compiler = Compiler(spec, build_graph(spec.config, spec.source), dump_ir, lambda line: _progress_line(line, quiet))
    if emit is not None:
        text = compiler.emit(backends, emit)
        if out is not None:
            compiler.write(out, text)
        else:
            click.echo(text, nl=False)
        return
    assert out is not None
    _write_artifact(spec, compiler, backends, out, seed, quiet, steps, inputs)


def _model_inputs(model: str, spec: ModelSpec) -> list[Path | None]:
    """The paths a compile reads: the model file or directory as given, its weights, their containment
    folder (a Hub repo's cache folder) and tokenizer."""
    given = Path(model)
    return [given if given.exists() else None, spec.weights_dir, spec.root, spec.tokenizer_path]


def _progress_line(message: str, quiet: bool) -> None:
    if not quiet:
        click.echo(f"      {message}", err=True)


def _write_artifact(
    spec: ModelSpec,
    compiler: Compiler,
    backends: list[Backend[Any]],
    out: Path,
    seed: int,
    quiet: bool,
    steps: int,
    inputs: list[Path | None],
) -> None:
    from tessera.model.config import hf_config_dict
    from tessera.runtime.artifact import Artifact, staged_artifact, write_manifest

    step = 1
    with staged_artifact(out, inputs) as staging:
        (staging / "graph.mlir").write_text(compiler.graph_text)
        weights: dict[str, object]
        if spec.weights_dir is not None:
            from tessera.frontend.checkpoint import convert_checkpoint

            step += 1
            _progress(step, steps, f"weights: converting {spec.weights_dir}", quiet)
            convert_checkpoint(
                spec.weights_dir, staging / "weights", config=spec.config, progress=not quiet, root=spec.root
            )
            weights = {"kind": "checkpoint", "dir": "weights"}
        else:
            weights = {"kind": "random", "seed": seed}
        tokenizer = None
        if spec.tokenizer_path is not None:
            shutil.copyfile(spec.tokenizer_path, staging / "tokenizer.json")
            tokenizer = "tokenizer.json"
        built = {}
        for backend in backends:
            step += 1
            _progress(step, steps, f"{backend.name}: {' -> '.join(backend.stage_names())}", quiet)
            built[backend.name] = compiler.compile(backend, staging)
        artifact = Artifact(
            path=staging,
            name=spec.name,
            config=hf_config_dict(spec.config),
            compile={**spec.compile.__dict__, "targets": list(built)},
            targets=built,
            weights=weights,
            tokenizer=tokenizer,
            extra={"source": spec.source},
        )
        write_manifest(artifact)
    _progress(steps, steps, f"wrote {out}", quiet)


if __name__ == "__main__":
    main()

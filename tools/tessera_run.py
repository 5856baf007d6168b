"""tessera-run: prefill a prompt and decode tokens from a compiled artifact.

    tessera-run out/tiny --input-ids 5,7,9 --max-new-tokens 16 --logits-out logits.npy --json
    tessera-run out/ckpt --prompt "The capital of France is" --max-new-tokens 8

With --json the last stdout line is a JSON object with "tokens" (the generated ids).
--logits-out writes the prompt's logits, float32, shape [prompt_length, vocab].
--profile reports, on stderr (and as "profile" in --json), each program's time per kernel kind: on x86 the
instrumented native programs' (with each thread's busy share), on a GPU (nvvm, rocdl) each launch timed by
events on the device's stream (with the GEMMs' and attention's TFLOP/s and their share of the device's bf16
peak).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from tessera.errors import TesseraError
from tessera.runtime.artifact import Artifact, read_artifact
from tessera.runtime.sampling import Sampler, SamplingOptions
from tessera.staging import check_apart, write_atomically
from tessera.tools.cli_common import COUNT, SEED, FiniteFloatRange, OneLineCommand, one_line_errors, parse_int_list

TOOL = "tessera-run"


def _load_tokenizer(artifact: Artifact) -> Any:
    if artifact.tokenizer is None:
        raise TesseraError(f"{artifact.path}: --prompt needs a tokenizer, and this artifact has none (use --input-ids)")
    from tokenizers import Tokenizer

    path = artifact.checked(artifact.tokenizer, "tokenizer")  # its size and sha256 as tessera.json records them
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses from Rust
        raise TesseraError(f"{path}: cannot read tokenizer: {str(exc).splitlines()[0]}") from None


def _open_session(artifact: Artifact, target: str) -> Any:
    if target not in artifact.targets:
        built = ", ".join(artifact.targets) or "none"
        raise TesseraError(f"{artifact.path}: not compiled for target '{target}' (built: {built})")
    if target == "reference":
        from tessera.targets.reference import ReferenceSession

        return ReferenceSession.open(artifact)
    if target == "x86":
        from tessera.runtime.x86_session import X86Session

        return X86Session.open(artifact)
    if target in ("rocdl", "nvvm"):
        from tessera.runtime.gpu_session import GpuSession

        # HIP (runtime/hip.py) or CUDA (runtime/cuda.py); one line where there is none
        return GpuSession.open(artifact, target)
    raise TesseraError(f"target '{target}' has no runtime in this build of Tessera")


def _check_capacity(session: Any, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse before any work a run that would outgrow the KV cache (the last new token is not fed back)."""
    capacity = getattr(session, "max_seq_len", None)
    if capacity is None:
        return
    if prompt_tokens > capacity:
        raise TesseraError(
            f"the prompt of {prompt_tokens} tokens is beyond the compiled maximum of {capacity} "
            "(compile with a larger --max-seq-len)"
        )
    needed = prompt_tokens + max(max_new_tokens - 1, 0)
    if needed > capacity:
        raise TesseraError(
            f"--max-new-tokens: the sequence would reach {needed} tokens, beyond the compiled maximum of "
            f"{capacity} (ask for at most {capacity - prompt_tokens + 1} new tokens)"
        )


@click.command(TOOL, cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@click.option("--target", help="Which compiled target to run (default: the first one built).")
@click.option("--input-ids", help="Prompt as comma-separated token ids, e.g. 5,7,9.")
@click.option("--prompt", help="Prompt text, tokenized with the artifact's tokenizer.json.")
@click.option(
    "--max-new-tokens",
    type=COUNT,
    default=16,
    show_default=True,
    help="At most the artifact's max_seq_len less the prompt.",
)
@click.option("--logits-out", type=click.Path(path_type=Path), help="Write prompt logits [T, vocab] float32 (.npy).")
@click.option("--temperature", type=FiniteFloatRange(min=0.0), default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=COUNT, default=0, show_default=True, help="0 = every token.")
@click.option("--top-p", type=FiniteFloatRange(min=0.0, max=1.0, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed.")
@click.option("--stop-at-eos", is_flag=True, help="Stop when the model emits its eos token.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON result as the last line.")
@click.option(
    "--profile",
    is_flag=True,
    help="Report time per kernel kind (x86: the instrumented programs, each thread's busy share; GPUs: device "
    "events around each launch, TFLOP/s against the bf16 peak).",
)
@one_line_errors(TOOL)
def main(
    artifact_dir: Path,
    target: str | None,
    input_ids: str | None,
    prompt: str | None,
    max_new_tokens: int,
    logits_out: Path | None,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    stop_at_eos: bool,
    as_json: bool,
    profile: bool,
) -> None:
    """Run ARTIFACT_DIR (built by tessera-compile): prefill the prompt, then decode."""
    artifact = read_artifact(artifact_dir)
    if logits_out is not None:
        # np.save's name (".npy" added), written apart from the artifact: a run never writes into its input.
        logits_out = logits_out if logits_out.suffix == ".npy" else logits_out.with_name(logits_out.name + ".npy")
        check_apart(logits_out, [artifact_dir], option="--logits-out")
    if (input_ids is None) == (prompt is None):
        raise TesseraError("give exactly one of --input-ids and --prompt")
    tokenizer = _load_tokenizer(artifact) if prompt is not None else None
    ids = tokenizer.encode(prompt).ids if tokenizer is not None else parse_int_list(input_ids or "", "--input-ids")
    vocab = int(artifact.config["vocab_size"])
    source = "--input-ids" if tokenizer is None else f"{artifact.file(str(artifact.tokenizer), 'tokenizer')}"
    for token in ids:
        if not 0 <= token < vocab:
            raise TesseraError(f"{source}: token {token} outside the vocabulary [0, {vocab})")
    if not ids:
        raise TesseraError("the prompt is empty")

    sampler = Sampler(SamplingOptions(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed))
    opened = time.perf_counter()
    session = _open_session(artifact, target or next(iter(artifact.targets)))
    load_s = time.perf_counter() - opened  # kernels loaded, weights read (or drawn on the device) and placed
    _check_capacity(session, len(ids), max_new_tokens)
    if profile and not hasattr(session, "start_profiling"):
        raise TesseraError(f"--profile: the {session.target} target runs no kernels to profile")
    profiler = session.start_profiling() if profile else None
    eos = artifact.config.get("eos_token_id")
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if stop_at_eos and eos is not None else set()

    start = time.perf_counter()
    logits = session.prefill(ids, last_only=logits_out is None)  # the other rows stay on the device
    prefill_s = time.perf_counter() - start
    first_token_s = time.perf_counter() - opened
    if logits_out is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(logits, dtype=np.float32))
        write_atomically(logits_out, buffer.getvalue())
    tokens: list[int] = []
    start = time.perf_counter()
    next_logits = logits[-1]
    while len(tokens) < max_new_tokens:
        token = sampler(next_logits)
        tokens.append(token)
        if token in eos_ids or len(tokens) == max_new_tokens:
            break
        next_logits = session.decode(token)
    decode_s = time.perf_counter() - start

    text = tokenizer.decode(tokens) if tokenizer is not None else None
    result = {
        "tokens": tokens,
        "prompt_tokens": len(ids),
        "target": session.target,
        # Which code ran (x86: JIT or which library, and the GEMM variant with the reason for it).
        "kernels": getattr(getattr(session, "kernels", None), "how", None),
        "load_ms": round(load_s * 1e3, 3),
        "prefill_ms": round(prefill_s * 1e3, 3),
        # From opening the artifact to the first token's logits on the host.
        "time_to_first_token_ms": round(first_token_s * 1e3, 3),
        "decode_tokens_per_s": round(len(tokens) / decode_s, 3) if decode_s > 0 and tokens else None,
        "text": text,
    }
    if profiler is not None:
        result["profile"] = profiler.summary()
        click.echo(profiler.report(), err=True)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(text if text is not None else " ".join(map(str, tokens)))
        click.echo(
            f"[{session.target}{'' if result['kernels'] is None else ': ' + result['kernels']}] "
            f"loaded in {result['load_ms']} ms, prompt {len(ids)} tokens in {result['prefill_ms']} ms "
            f"(first token after {result['time_to_first_token_ms']} ms), "
            f"{len(tokens)} new tokens at {result['decode_tokens_per_s']} tokens/s",
            err=True,
        )


if __name__ == "__main__":
    main()

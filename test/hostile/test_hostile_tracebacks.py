"""Class 3 of issue 12: Python tracebacks escaping the readers, the CLI numbers, config relations and pass
options.

Rule: one reader for every JSON and YAML file the project opens (size, depth and integer limits, one-line
errors naming the file); every numeric option and config field bounded; every relation the semantics need
checked at load; a malformed -p pipeline or pass option refused by tessera-opt in one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hostile_run import (
    BIG_INT,
    PROMPT_IDS,
    ROOT,
    TINY_YAML,
    Box,
    Phrase,
    edit_json,
    hf_checkpoint,
    refused,
    tiny_artifact,
)
from hostile_sites import SITES, after_corruption, corrupt, site_param


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


# --- every parsed file: not UTF-8, 100k-deep nesting, a 5000-digit integer ------------------------------------


READER_CASES = [(site, mutation) for site, spec in SITES.items() for mutation in spec.mutations]


@pytest.mark.parametrize(
    ("site", "mutation"), [site_param(s, m) for s, m in READER_CASES], ids=[f"{s}-{m}" for s, m in READER_CASES]
)
def test_reader_refuses_in_one_line(box: Box, site: str, mutation: str) -> None:
    spec = SITES[site]
    path, run = spec.make(box)
    corrupt(spec, path, mutation)
    after_corruption(spec, path)
    refused(run(), spec.phrase)


# --- numbers on the command line ----------------------------------------------------------------------------------

CLI_NUMBERS = [
    ("tessera-run", "--seed", "-1"),
    ("tessera-run", "--seed", "x"),
    ("tessera-run", "--temperature", "nan"),
    ("tessera-run", "--temperature", "inf"),
    ("tessera-run", "--top-p", "nan"),
    ("tessera-run", "--input-ids", BIG_INT),
    ("tessera-compile", "--max-seq-len", str(2**63)),
    ("tessera-compile", "--batch", str(2**63)),
    ("tessera-compile", "--seed", "-1"),
    ("tessera-convert", "--shard-size", "inf"),
    ("tessera-convert", "--shard-size", "-1"),
    ("tessera-convert", "--shard-size", "0"),
    ("tessera-convert", "--shard-size", "lots"),
    ("tessera-convert", "--shard-size", "nan"),
    ("tessera-convert", "--shard-size", "1e400"),
    ("tessera-convert", "--shard-size", "0.1B"),
]


@pytest.mark.parametrize(("tool", "option", "value"), CLI_NUMBERS, ids=[f"{t}{o}={v[:8]}" for t, o, v in CLI_NUMBERS])
def test_numeric_option_out_of_bounds(box: Box, tool: str, option: str, value: str) -> None:
    if tool == "tessera-run":
        artifact = box.copy_in(tiny_artifact().path, "artifact")
        ids = [] if option == "--input-ids" else ["--input-ids", PROMPT_IDS]
        outcome = box.run(tool, artifact, "--target", "reference", *ids, option, value, "--max-new-tokens", "2")
    elif tool == "tessera-compile":
        outcome = box.run(tool, box.copy_in(TINY_YAML), "--target", "reference", option, value, "-o", box.out(), "-q")
    else:
        outcome = box.run(tool, box.copy_in(hf_checkpoint(), "ckpt"), option, value, "-o", box.out(), "--no-progress")
    refused(outcome, option)


# --- config fields and the relations between them -------------------------------------------------------------


def yaml_with(fields: dict[str, str]) -> str:
    """nemotron_h_tiny.yaml with some top-level fields set (replaced where present, else added)."""
    text = TINY_YAML.read_text()
    for key, value in fields.items():
        line = f"{key}: {value}"
        pattern = re.compile(rf"^{re.escape(key)}:.*$", re.MULTILINE)
        text = pattern.sub(line, text) if pattern.search(text) else text.replace("\ncompile:", f"\n{line}\ncompile:")
    return text


CONFIG_FIELDS = {
    "time_step_min>max": ({"time_step_min": "0.2", "time_step_max": "0.1"}, "time_step"),
    "routed_scaling_factor=nan": ({"routed_scaling_factor": ".nan"}, "routed_scaling_factor"),
    "routed_scaling_factor=inf": ({"routed_scaling_factor": ".inf"}, "routed_scaling_factor"),
    "time_step_floor=nan": ({"time_step_floor": ".nan"}, "time_step_floor"),
    "eos_token_id=str": ({"eos_token_id": '"x"'}, "eos_token_id"),
    "eos_token_id=[1.5]": ({"eos_token_id": "[1.5]"}, "eos_token_id"),
    "eos_token_id={}": ({"eos_token_id": "{}"}, "eos_token_id"),
    "eos_token_id=[true]": ({"eos_token_id": "[true]"}, "eos_token_id"),
    "bos_token_id=1.5": ({"bos_token_id": "1.5"}, "bos_token_id"),
}


@pytest.mark.parametrize("case", list(CONFIG_FIELDS))
def test_model_yaml_field_out_of_bounds(box: Box, case: str) -> None:
    fields, phrase = CONFIG_FIELDS[case]
    model = box.inputs / "model.yaml"
    model.write_text(yaml_with(fields))
    refused(box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q"), "model.yaml", phrase)


def test_model_yaml_compile_section_out_of_bounds(box: Box) -> None:
    model = box.inputs / "model.yaml"
    model.write_text(TINY_YAML.read_text().replace("max_seq_len: 1024", f"max_seq_len: {2**62}"))
    refused(box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q"), "max_seq_len")


# The same in an HF config.json, where JSON constants (NaN, Infinity) and transformers 5's {"__float__": ...}
# spelling are read as floats.
HF_FIELDS = {
    "time_step_min>max": ({"time_step_min": 0.2, "time_step_max": 0.1}, "time_step"),
    "routed_scaling_factor=Infinity": ({"routed_scaling_factor": float("inf")}, "routed_scaling_factor"),
    "routed_scaling_factor=NaN": ({"routed_scaling_factor": float("nan")}, "routed_scaling_factor"),
    "routed_scaling_factor=__float__": ({"routed_scaling_factor": {"__float__": "-Infinity"}}, "routed_scaling_factor"),
    "eos_token_id=[1.5]": ({"eos_token_id": [1.5]}, "eos_token_id"),
    "eos_token_id={}": ({"eos_token_id": {}}, "eos_token_id"),
}


@pytest.mark.parametrize("case", list(HF_FIELDS))
def test_hf_config_field_out_of_bounds(box: Box, case: str) -> None:
    fields, phrase = HF_FIELDS[case]
    checkpoint = box.copy_in(hf_checkpoint(), "ckpt")
    edit_json(checkpoint / "config.json", lambda config: config.update(fields))
    refused(box.run("tessera-convert", checkpoint, "-o", box.out(), "--no-progress"), "config.json", phrase)


# tessera.json's config is what tessera-run draws random weights and takes its stop tokens from; its weights
# entry says how
ARTIFACT_FIELDS: dict[str, tuple[dict[tuple[str, str], object], Phrase]] = {
    "time_step_min>max": ({("config", "time_step_min"): 0.2, ("config", "time_step_max"): 0.1}, "time_step"),
    "eos_token_id=[1.5]": ({("config", "eos_token_id"): [1.5]}, "eos_token_id"),
    "vocab_size=0": ({("config", "vocab_size"): 0}, "vocab_size"),
    "weights.seed=-1": ({("weights", "seed"): -1}, "seed"),
    "weights.kind=bogus": ({("weights", "kind"): "bogus"}, "kind"),
}


@pytest.mark.parametrize("case", list(ARTIFACT_FIELDS))
def test_artifact_field_out_of_bounds(box: Box, case: str) -> None:
    fields, phrase = ARTIFACT_FIELDS[case]
    artifact = box.copy_in(tiny_artifact().path, "artifact")

    def change(manifest: dict[str, Any]) -> None:
        for (section, key), value in fields.items():
            manifest[section][key] = value

    edit_json(artifact / "tessera.json", change)
    outcome = box.run(
        "tessera-run",
        artifact,
        "--target",
        "reference",
        "--input-ids",
        PROMPT_IDS,
        "--max-new-tokens",
        "2",
        "--stop-at-eos",
    )
    refused(outcome, "tessera.json", phrase)


# --- tessera-opt: pass pipelines and their options ------------------------------------------------------------

SCHEDULE = "convert-tessera-graph-to-schedule"
PIPELINES = [
    (f"{SCHEDULE}{{max-seq-len=-5}}", "max-seq-len"),
    (f"{SCHEDULE}{{max-seq-len=0}}", "max-seq-len"),
    (f"{SCHEDULE}{{max-seq-len={2**63}}}", "max-seq-len"),
    (f"{SCHEDULE}{{max-seq-len=abc}}", ("max-seq-len", "max_seq_len")),
    (f"{SCHEDULE}{{chunk-size=0}}", "chunk-size"),
    (f"{SCHEDULE}{{chunk-size=-3}}", "chunk-size"),
    (f"{SCHEDULE}{{ssm-state-dtype=f99}}", "ssm-state-dtype"),
    (f"{SCHEDULE}{{no-such-option=1}}", ("no-such-option", "no_such_option")),
    ("foo{", "foo"),
    (f"{SCHEDULE}{{max-seq-len=5", SCHEDULE),
    ("no-such-pass", "no-such-pass"),
]


@pytest.mark.parametrize(("pipeline", "phrase"), PIPELINES, ids=[p for p, _ in PIPELINES])
def test_tessera_opt_pipeline_refused(box: Box, pipeline: str, phrase: Phrase) -> None:
    source = box.copy_in(ROOT / "graph_examples" / "hybrid.mlir")
    refused(box.run("tessera-opt", source, "-p", pipeline), phrase)

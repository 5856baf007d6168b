"""Class 4 of issue 12: resource bombs.

Rule: bounded time and memory for any input file. A run is bounded by the box (timeout, address space, CPU
and file-size limits); a tool that expands an alias bomb or reads a huge file whole hits those bounds and
ends in a timeout, a signal or "out of memory" — none of which names the file, so the case fails. Only a
reader that refuses before spending (aliases refused, size checked first) passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_run import PROMPT_IDS, TINY_YAML, Box, edit_json, refused, tiny_artifact
from hostile_sites import SITES, make_huge_in_place, site_param


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A flow-style YAML value of about 1 KB whose aliases expand to width**levels strings ("billion laughs")."""
    parts = ['&a0 ["lol"' + ', "lol"' * (width - 1) + "]"]
    for level in range(1, levels):
        parts.append(f"&a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + f", *a{levels - 1}]"


# Where the bomb sits in model.yaml: an HF field the loader ignores (so only the reader can refuse it), the
# compile section, and a model field whose type is checked only after loading.
ALIAS_PLACES = {
    "ignored-field": lambda text, bomb: text + f"\ntokenizer_class: {bomb}\n",
    "compile-section": lambda text, bomb: text.split("\ncompile:")[0] + f"\ncompile: {bomb}\n",
    "model-field": lambda text, bomb: text.replace(
        'hybrid_override_pattern: "M-M*-ME"', f"hybrid_override_pattern: {bomb}"
    ),
}


@pytest.mark.parametrize("place", list(ALIAS_PLACES))
def test_yaml_alias_bomb_in_model_yaml(box: Box, place: str) -> None:
    model = box.inputs / "model.yaml"
    model.write_text(ALIAS_PLACES[place](TINY_YAML.read_text(), alias_bomb()))
    assert model.stat().st_size < TINY_YAML.stat().st_size + 1024
    refused(box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q"), "model.yaml")


@pytest.mark.parametrize("site", [site_param(site) for site in SITES])
def test_huge_sparse_file(box: Box, site: str) -> None:
    spec = SITES[site]
    path, run = spec.make(box)
    make_huge_in_place(spec, path)  # its recorded hash, if any, is left as it was: the size alone disagrees
    refused(run(), spec.phrase)


def test_model_yaml_with_a_hundred_thousand_layers(box: Box) -> None:
    # 100 KB of pattern (the largest Nemotron-H has 118 layers) builds a graph for minutes unless the layer count
    # is bounded; refusing it takes a second, so a minute is a bound, not a timing
    model = box.inputs / "model.yaml"
    model.write_text(TINY_YAML.read_text().replace('"M-M*-ME"', '"' + "M-" * 50_000 + '"'))
    outcome = box.run("tessera-compile", model, "--target", "reference", "-o", box.out(), "-q", timeout=60)
    refused(outcome, "model.yaml", "hybrid_override_pattern")


def test_artifact_config_of_a_model_too_large_to_hold(box: Box) -> None:
    # tessera.json's config is what the run draws random weights from: 2**40 hidden units is terabytes
    artifact = box.copy_in(tiny_artifact().path, "artifact")
    edit_json(artifact / "tessera.json", lambda manifest: manifest["config"].update(hidden_size=2**40))
    outcome = box.run(
        "tessera-run", artifact, "--target", "reference", "--input-ids", PROMPT_IDS, "--max-new-tokens", "2"
    )
    refused(outcome, ("tessera.json", "hidden_size"))

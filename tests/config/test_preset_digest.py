"""The evaluate rule's ``preset_digest`` param: Snakemake reruns an evaluation when it
changes, so it must follow the evaluation's own preset and nothing else in the presets
file (a comment, another preset), or a code update would delete finished tables."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipeline.evaluate.presets as presets_module
from pipeline.config import ConfigError
from pipeline.evaluate.presets import DEFAULT_PRESETS, runs_digest
from pipeline.stages.sweep import load_dag, preset_digest

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "config" / "sweeps"


@pytest.fixture
def digests(monkeypatch, tmp_path):
    """Every preset's digest, the DAG loaded over a presets file holding ``text``."""
    def over(text: str) -> dict[str, str]:
        path = tmp_path / "presets.yaml"
        path.write_text(text)
        monkeypatch.setattr(presets_module, "DEFAULT_PRESETS", path)
        dag = load_dag({"sweep": "smoke"}, SWEEPS)
        return {name: preset_digest(dag, name) for name in ("quick", "sat", "defence")}
    return over


def test_digest_changes_with_its_own_preset_only(digests):
    text = DEFAULT_PRESETS.read_text()
    base = digests(text)
    assert len(set(base.values())) == 3  # three presets, three digests
    assert digests(text + "\n# a comment\n") == base
    # an edit of sat's PGD-40 entry changes sat's digest, not quick's or defence's
    assert text.count("params: {steps: 40}}") == 1
    edited = digests(text.replace("params: {steps: 40}}", "params: {steps: 41}}"))
    assert edited["sat"] != base["sat"]
    assert {k: edited[k] for k in ("quick", "defence")} == {
        k: base[k] for k in ("quick", "defence")}


def test_digest_is_the_runs_digest_of_the_resolved_preset():
    dag = load_dag({"sweep": "smoke"}, SWEEPS)
    assert preset_digest(dag, "quick") == runs_digest(dag.presets["quick"])[:16]
    # a preset's own entries reordered is another evaluation (its rows, its streams)
    runs = dag.presets["quick"]
    assert runs_digest(runs[::-1]) != runs_digest(runs)


def test_unknown_preset_is_named():
    dag = load_dag({"sweep": "smoke"}, SWEEPS)
    with pytest.raises(ConfigError, match="unknown preset 'quik'.*quick"):
        preset_digest(dag, "quik")

"""Transfer attacks in the DAG: each evaluation gets ``--source-model NAME=DIR`` for the
sources its preset's transfer entries name, waits for their checkpoints, and a source
trained with a seed outside the sweep's ``seeds`` is a training job of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from test_dag import REPO, snakemake
from test_quoting import job_words, option

# snakemake with the package's presets file replaced (the evaluate jobs and the DAG read
# the same file), so a preset with transfer entries can be tried on a shipped sweep
RUNNER = """
import sys
from pathlib import Path
import pipeline.evaluate.presets as presets
presets.DEFAULT_PRESETS = Path(sys.argv[1])
from snakemake.cli import main
sys.argv = ["snakemake", *sys.argv[2:]]
main()
"""
TRANSFER = {"attack": "pgd", "attack_params": {"steps": 2}}
SHIPPED_PRESETS = REPO / "pipeline" / "resources" / "presets.yaml"


def dry_run_with_presets(presets: Path, *args: str) -> str:
    exe = Path(sys.executable)
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([str(exe), "-c", RUNNER, str(presets), *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def sources_of(words: list[str]) -> dict[str, str]:
    return dict(words[i + 1].split("=", 1) for i, w in enumerate(words)
                if w == "--source-model")


def quick_with_transfer(tmp_path: Path) -> Path:
    """The shipped presets, ``quick`` plus transfer entries on default, base, other_seed."""
    data = yaml.safe_load(SHIPPED_PRESETS.read_text())
    data["presets"]["quick"]["attacks"] += [
        {"label": f"transfer_{name}", "attack": "transfer", "eps": "4/255",
         "params": {**TRANSFER, **({"source_name": name} if name != "default" else {})}}
        for name in ("default", "base", "other_seed")]
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tiny_evaluations_get_their_sources_and_the_seed_1_jobs_run(tmp_path):
    work = tmp_path / "work"
    out = dry_run_with_presets(quick_with_transfer(tmp_path), "-n", "-p", "--config",
                               "sweep=tiny", f"workdir={work}")
    runs = f"{work}/tiny/runs/shapes"
    evaluations = job_words(out, "evaluate")
    assert evaluations
    for words in evaluations:
        model = re.search(r"/(students|sad)/(\w+)/seed0$", option(words, "--model"))
        assert model, words
        sources = sources_of(words)
        if model.group(1) == "sad":  # the defence preset: its own base, another seed
            base = {"sad": "standard", "at_sad": "pgd_at"}[model.group(2)]
            assert sources == {"base": f"{runs}/students/{base}/seed0",
                               "other_seed": f"{runs}/students/{base}/seed1"}, words
        else:  # base and other_seed are a SAD model's only: skipped with a flag
            assert sources == {"default": f"{runs}/students/standard/seed1"}, words
    trained = {option(w, "--out") for w in job_words(out, "train")
               if w[w.index("--store") - 1] == "train"}  # not `--split train`
    assert {f"{runs}/students/standard/seed1", f"{runs}/students/pgd_at/seed1"} <= trained
    # a source is trained, not evaluated
    assert not [w for w in evaluations if "seed1" in option(w, "--out")]


def test_shipped_tiny_passes_exactly_the_sources_its_preset_names(tmp_path):
    from pipeline.stages.sweep import load_dag

    dag = load_dag({"sweep": "tiny"}, REPO / "config" / "sweeps")
    res = snakemake("-n", "-p", "--config", "sweep=tiny", f"workdir={tmp_path}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    evaluations = job_words(out, "evaluate")
    assert evaluations
    for words in evaluations:
        model = re.search(r"/(\w+)/seed(\d+)$", option(words, "--model"))
        named = dag.sweep.transfer_sources("shapes", model.group(1), int(model.group(2)))
        used = dag.preset_sources(dag.preset_for(model.group(1)))
        assert set(sources_of(words)) == set(named) & used, words
    if "default" in dag.preset_sources():  # tiny names standard seed 1 as its source
        assert f"{tmp_path}/tiny/runs/shapes/students/standard/seed1" in out


def test_a_preset_without_transfer_entries_adds_no_job(tmp_path):
    # cifar_quick names a source (standard seed 1) that its students' preset never uses:
    # their evaluations get no --source-model (its SAD models' defence preset uses their
    # own base and other_seed sources)
    data = yaml.safe_load(SHIPPED_PRESETS.read_text())
    data["presets"]["pgd20"] = {"attacks": [
        {"label": "pgd20", "attack": "pgd", "eps": "8/255", "params": {"steps": 20}}]}
    presets = tmp_path / "presets.yaml"
    presets.write_text(yaml.safe_dump(data))
    out = dry_run_with_presets(presets, "-n", "-p", "--config", "sweep=cifar_quick",
                               f"workdir={tmp_path / 'work'}")
    students = [w for w in job_words(out, "evaluate") if "/students/" in option(w, "--model")]
    assert students and not [w for w in students if "--source-model" in w]
    trained = {option(w, "--out") for w in job_words(out, "train")
               if w[w.index("--store") - 1] == "train"}
    assert {t for t in trained if t.endswith("/seed1")} == {
        f"{tmp_path / 'work'}/cifar_quick/runs/cifar10/students/{b}/seed1"
        for b in ("standard", "pgd_at")}  # the SAD models' other_seed bases only

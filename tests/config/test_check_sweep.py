"""The comparison check (``salpipe check-sweep``) and the sweep-level threat model: every
shipped sweep is fair; one changed setting fails and is named; students inherit the
threat model explicitly; the DAG refuses an unfair sweep before any job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.config import ConfigError
from pipeline.stages.check_sweep import compare
from pipeline.stages.sweep import load_dag, load_dag_of

REPO = Path(__file__).resolve().parents[2]
SWEEPS_DIR = REPO / "config" / "sweeps"
SHIPPED = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def cli(*args):
    from cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def sweep_copy(tmp_path: Path, name: str, edit) -> Path:
    """A copy of shipped sweep ``name`` with ``edit(data)`` applied, as a file."""
    data = yaml.safe_load((SWEEPS_DIR / f"{name}.yaml").read_text())
    edit(data)
    path = tmp_path / f"{name}_edited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # sweep files name their training configs from the repo root


@pytest.mark.parametrize("sweep", SHIPPED)
def test_every_shipped_sweep_passes(sweep, tmp_path):
    out = tmp_path / "comparisons.json"
    res = cli("check-sweep", sweep, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "0 with an undeclared difference" in res.output
    data = json.loads(out.read_text())
    assert data["sweep"] == sweep and data["settings"]
    assert all(not p["undeclared"] for p in data["pairs"])


def test_a_changed_step_size_fails_and_is_named(tmp_path):
    def edit(d):
        d["students"]["int"]["params"] = {"step_size": "2/255"}

    path = sweep_copy(tmp_path, "cifar_quick", edit)
    with pytest.raises(ConfigError, match=r"students\.int\.params\.step_size.*2\.5/255"):
        load_dag_of(path)
    res = CliRunner().invoke(__import__("cli").main, ["check-sweep", str(path)])
    assert res.exit_code == 2 and "students.int.params.step_size" in res.output


def test_a_declared_step_size_passes_and_is_listed(tmp_path):
    def edit(d):
        d["students"]["int"]["params"] = {"step_size": "2/255"}
        d["students"]["int"]["deviations"] = {"step_size": "a test reason"}

    path = sweep_copy(tmp_path, "cifar_quick", edit)
    result = compare(load_dag_of(path))
    assert not result.errors
    pair = next(p for p in result.pairs if {p.a, p.b} == {"pgd_at", "int"})
    assert pair.declared == {"step_size": "int: a test reason"}
    text = result.text()
    assert "declared step_size (2.5/255 vs 2/255: int: a test reason)" in text
    assert "deviation: int step_size: a test reason" in text


def test_a_pair_difference_in_the_budget_fails_naming_the_pair(tmp_path):
    """A student with its own epochs: the pairs with it fail, naming pair and setting."""
    def edit(d):
        d["students"]["fat"]["train"] = {"epochs": 8}

    path = sweep_copy(tmp_path, "cifar_quick", edit)
    result = compare(load_dag_of(path))
    bad = {(p.a, p.b) for p in result.errors}
    assert ("pgd_at", "fat") in bad and all("fat" in pair for pair in bad)
    assert all(p.undeclared == ("epochs",) for p in result.errors)
    res = cli("check-sweep", str(path), "--quiet")
    assert res.exit_code == 1
    assert "ERROR pgd_at | fat" in res.output and "UNDECLARED epochs (4 vs 8)" in res.output


def test_an_undeclared_bn_mode_fails(tmp_path):
    def edit(d):
        d["students"]["pgd_at"]["bn_mode"] = "train"

    with pytest.raises(ConfigError, match=r"students\.pgd_at\.bn_mode.*deviations"):
        load_dag_of(sweep_copy(tmp_path, "cifar_quick", edit))


def test_an_attack_student_needs_a_threat_model(tmp_path):
    path = sweep_copy(tmp_path, "smoke", lambda d: d.pop("threat"))
    with pytest.raises(ConfigError, match=r"pgd_at \(pgd_at\) crafts .* no threat model"):
        load_dag_of(path)


def test_a_deviation_typo_is_refused(tmp_path):
    def edit(d):
        d["students"]["trades"]["deviations"] = {"betta": "x"}

    with pytest.raises(ConfigError, match=r"'betta' is not a compared setting; allowed: "):
        load_dag_of(sweep_copy(tmp_path, "cifar_quick", edit))


def test_students_inherit_the_threat_model_explicitly():
    """No attack-based student falls back to a class default: the job's command line
    carries eps, steps, step size and random start, and SAT's eps0."""
    dag = load_dag({"sweep": "cifar_quick"})
    for student in ("pgd_sat", "sip_at", "fat", "part", "int", "int2", "trades"):
        words = dag.student_args("cifar10", student, 0)
        params = {words[i + 1] for i, w in enumerate(words) if w == "-p"}
        assert {"eps=8/255", "steps=3", "step_size=2.5/255"} <= params, (student, params)
    words = dag.student_args("cifar10", "pgd_sat", 0)
    assert "eps0=8/255" in words and "random_start=true" in words
    assert words[words.index("bn_mode=train") - 1] == "-s"
    assert "bn_mode=eval" in dag.student_args("cifar10", "pgd_at", 0)
    assert "eps=8/255" in dag.student_args("cifar10", "uniform_noise", 0)
    assert not [w for w in dag.student_args("cifar10", "standard", 0) if w == "-p"]


def test_a_data_set_changes_the_threat_model():
    """`paper`: CUB's 32 steps of 1/255 reach every student there, PGD-AT included."""
    dag = load_dag({"sweep": "paper"})
    for student in ("pgd_at", "sip_at"):
        cub = dag.student_params("cub200", student)
        assert (cub["steps"], cub["step_size"]) == (32, "1/255")
        assert dag.student_params("cifar10", student)["steps"] == 10
    assert dag.student_params("cub200", "pgd_at_5")["steps"] == 5  # declared


def test_sat_alpha_is_shown_for_the_run_length():
    result = compare(load_dag({"sweep": "cifar_quick"}))
    assert result.settings["cifar10"]["sat_gbp"]["alpha"] == f"{0.6 ** 5:.4g}"


def test_the_dag_refuses_an_unfair_sweep_before_any_job(tmp_path):
    """The Snakefile runs the check while it loads: no job starts."""
    work = tmp_path / "repo"
    work.mkdir()
    for part in ("Snakefile", "workflow", "config"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / part)
    sweep = yaml.safe_load((work / "config/sweeps/smoke.yaml").read_text())
    sweep["students"]["standard"]["train"] = {"epochs": 3}
    (work / "config/sweeps/smoke.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run([str(exe), "-n", "--config", "sweep=smoke",
                          f"workdir={tmp_path / 'out'}"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "standard | pgd_at differ in epochs (3 vs 1)" in out, out
    assert "rule prepare_data" not in out and not (tmp_path / "out").exists()


def test_a_defence_preset_without_the_adaptive_suite_is_refused(tmp_path):
    """A sweep that would evaluate its SAD models with the old `sad` preset (PGD-20 at
    4/255, Square and transfer at 8/255 only) does not start, naming what is missing."""
    def edit(d):
        d["evaluate"]["defence_preset"] = "sad"

    with pytest.raises(ConfigError, match=r"defence_preset 'sad' lacks the adaptive suite"
                       r"(.|\n)*1/255: APGD-CE(.|\n)*8/255: transfer from another seed"):
        load_dag_of(sweep_copy(tmp_path, "cifar_quick", edit))


def test_defences_get_the_defence_preset_and_their_own_image_count():
    dag = load_dag({"sweep": "cifar_quick"})
    sad = dag.eval_args("cifar10", None, "sad")
    assert sad[sad.index("--preset") + 1] == "defence_cpu" and sad[sad.index("--n") + 1] == "100"
    std = dag.eval_args("cifar10", None, "standard")
    assert std[std.index("--preset") + 1] == "pgd20" and std[std.index("--n") + 1] == "500"
    assert set(dag.transfer_sources("cifar10", "sad", 0)) == {"base", "other_seed"}

"""The Snakemake DAG: lint, dry runs of every sweep (and the SLURM profile), and a real
run of the `smoke` sweep whose second run has nothing to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWEEPS = sorted(p.stem for p in (REPO / "config" / "sweeps").glob("*.yaml"))


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_lint_is_clean():
    res = snakemake("--lint")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "good condition" in res.stdout + res.stderr


@pytest.mark.parametrize("sweep", SWEEPS)
def test_dry_run_of_every_sweep(sweep, tmp_path):
    res = snakemake("-n", "--config", f"sweep={sweep}", f"workdir={tmp_path}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for rule in ("prepare_data", "train_student", "evaluate", "report"):
        assert rule in out


def test_slurm_profile_dry_run_with_the_paper_config(tmp_path):
    res = snakemake(
        "-n", "--profile", "profiles/slurm", "--config", "sweep=paper",
        "data_root=/data/datasets", f"workdir={tmp_path}", "scheduler=tcp://127.0.0.1:8786",
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "sad_calibrate" in out and "precompute_saliency" in out


def test_dry_run_passes_each_sad_job_its_seed(tmp_path):
    # every seed<k> SAD job calibrates with seed k (they all used seed 0 before)
    import re

    res = snakemake("-n", "-p", "--config", "sweep=paper", f"workdir={tmp_path}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    jobs = [line for line in out.splitlines() if " sad-calibrate " in line]
    pairs = {(m.group(1), m.group(2)) for line in jobs
             for m in [re.search(r"--seed (\d+) .*--out \S*/sad/\w+/seed(\d+)", line)] if m}
    assert len(pairs) == 3 and all(a == b for a, b in pairs), jobs


def test_config_typo_is_refused_naming_the_key(tmp_path):
    res = snakemake("-n", "--config", "sweep=smokee", f"workdir={tmp_path}")
    assert res.returncode != 0
    assert "smokee" in res.stdout + res.stderr


@pytest.mark.slow
def test_smoke_dag_runs_end_to_end_and_then_has_nothing_to_do(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    res = snakemake("--cores", "2", "--config", "sweep=smoke", "device=cpu", cwd=work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = work / "data" / "smoke"
    assert (out / "report" / "report.html").is_file()
    assert (out / "report" / "report.md").read_text().count("standard") >= 1
    assert (out / "runs/shapes/teachers/cnn_std/model.pt").is_file()
    assert (out / "results/shapes/pgd_at/seed0/quick.parquet").is_file()
    log = (out / "logs/train_student/shapes/standard/seed0.log").read_text()
    assert log.splitlines()[0].startswith("salpipe --device cpu --threads 1 train --store ")
    again = snakemake("-n", "--config", "sweep=smoke", "device=cpu", cwd=work)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

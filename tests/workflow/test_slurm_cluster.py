"""The shipped SLURM profile (profiles/slurm) through the SLURM executor plugin: the
sbatch line it writes for gpus=0 and gpus=1 (a stand-in sbatch; no cluster needed), and
the `smoke` sweep on a real cluster, skipped unless `sbatch` is on PATH and `sinfo` shows
a node up (`.ci/slurm_up.sh` starts a one-node cluster on this machine; CI runs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_dag import REPO, snakemake

UP = ("idle", "mix", "alloc", "comp")
# the plugin names each job's rule in its sbatch comment: rule_<rule>[_wildcards_<values>]
COMMENT = re.compile(r"--comment rule_(\w+?)(?:_wildcards_\S*)?\s")


def cluster_state() -> str | None:
    """Why there is no usable cluster here, or None when a node is up."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (.ci/slurm_up.sh starts a local cluster)"
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo does not answer: {err}"
    if res.returncode != 0 or not any(s.rstrip("*~#$@") in UP for s in res.stdout.split()):
        return f"no SLURM node is up: {(res.stdout + res.stderr).strip()!r}"
    return None


def copy_workflow(work: Path) -> Path:
    work.mkdir()
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    return work


# Stand-ins for the SLURM commands the plugin calls: sbatch records its arguments and
# refuses, so each job's submission is seen without running it.
STAND_INS = {
    "sbatch": 'echo "$*" >> "$(dirname "$0")/calls"; echo "stand-in refuses" >&2; exit 1',
    "sshare": "exit 0",  # no accounts known: the plugin then skips its account check
    "sacctmgr": "exit 1", "sinfo": "exit 1", "squeue": "exit 1", "scontrol": "exit 1",
}


@pytest.mark.parametrize("gpus", [0, 1])
def test_profile_requests_gpus_in_one_form_following_the_config(gpus, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    work = copy_workflow(tmp_path / "repo")
    (work / "data/smoke/flags/shapes").mkdir(parents=True)
    (work / "data/smoke/flags/shapes/prepared").touch()  # so the first job is a GPU one
    res = snakemake(
        "--profile", str(REPO / "profiles" / "slurm"), "--slurm-status-command", "squeue",
        "--retries", "0", "data/smoke/runs/shapes/teachers/cnn_std/model.pt",
        "--config", "sweep=smoke", "device=cpu", f"gpus={gpus}", cwd=work,
    )
    log = bin_dir / "calls"
    calls = log.read_text().splitlines() if log.exists() else []
    assert calls and all("rule_train_teacher" in c for c in calls), res.stdout + res.stderr
    words = calls[0].split(" --wrap=")[0].split()
    requests = [w for w in words if w.startswith(("--gpus", "--gres"))]
    partition = words[words.index("-p") + 1]  # chosen by partitions.yaml
    assert (requests, partition) == ((["--gpus=1"], "gpu") if gpus else ([], "cpu")), words


@pytest.mark.slurm
@pytest.mark.slow
def test_smoke_sweep_runs_through_slurm_with_the_shipped_profile(tmp_path):
    reason = cluster_state()
    if reason:
        pytest.skip(reason)
    work = copy_workflow(tmp_path / "repo")
    res = snakemake(
        "--profile", str(REPO / "profiles" / "slurm"),
        # a cluster without an accounting database (no sacct): job states from squeue
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "5",
        # one CPU a job, so that a small test node runs several jobs at once
        "--max-threads", "1",
        "--verbose", "--config", "sweep=smoke", "device=cpu", "gpus=0",
        cwd=work, timeout=1500,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert (work / "data" / "smoke" / "report" / "report.html").is_file()

    # every job went through sbatch, with no GPU request when gpus=0
    calls = [line for line in out.splitlines() if "sbatch call:" in line]
    rules = {m.group(1) for c in calls for m in [COMMENT.search(c)] if m}
    # (check_sweep, saliency_gallery and report are localrules: they run here)
    cluster_rules = {"prepare_data", "train_teacher", "precompute_saliency", "train_student",
                     "evaluate"}
    assert rules == cluster_rules, rules
    assert not [c for c in calls if "--gpus" in c or "--gres" in c], calls[:1]
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(ids) == len(calls), (ids, len(calls))

    # and SLURM ran them: squeue still lists recent jobs, and they completed
    seen = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i %T", "-j", ",".join(ids)],
        capture_output=True, text=True, timeout=20,
    ).stdout
    states = dict(line.split() for line in seen.splitlines() if line.strip())
    assert ids[-1] in states, (ids, states)  # the last job, finished just now
    assert set(states.values()) == {"COMPLETED"}, states

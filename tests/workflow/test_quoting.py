"""No shell strings in the DAG: every rule runs `salpipe` with words Snakemake quotes
(no `eval`), so a path holding a space, a `;` or a `$(...)` is one argument and never
code, and each job log starts with the command, shell-quoted, on one line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_dag import REPO, snakemake

INJECTION = ";touch INJECTED;$(touch INJECTED2)"


def job_words(out: str, stage: str) -> list[list[str]]:
    """The words of every printed job (`snakemake -p`) running `salpipe ... <stage>`."""
    jobs = [shlex.split(m.group(1)) for m in re.finditer(r"cmd=\((.*?)\); printf", out)]
    return [words for words in jobs if stage in words]


def copy_repo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def first_log_line(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    return shlex.split(lines[0])


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def injected_files(trees: list[Path], dirs: list[Path]) -> list[Path]:
    """Any file the injected `touch`es created: anywhere under ``trees``, or in ``dirs``."""
    names = ("INJECTED", "INJECTED2")
    found = [p for t in trees for n in names for p in t.rglob(n)]
    return found + [d / n for d in dirs for n in names if (d / n).exists()]


def test_dag_args_are_lists_of_words():
    from pipeline.stages.sweep import load_dag

    root = f"/data/my sets{INJECTION}"
    dag = load_dag({"sweep": "cpu", "data_root": root, "scheduler": "tcp://h 1"},
                   REPO / "config" / "sweeps")
    d, teacher = dag.teacher_cells()[0]
    student = next(m for _, m, _ in dag.cells() if not dag.is_sad(m))
    source = next(s for _, s in dag.source_cells() if dag.source_teacher(s))
    for args in (dag.prepare_args(d), dag.teacher_args(d, teacher), dag.source_args(source),
                 dag.student_args(d, student, 3), dag.eval_args(d)):
        assert isinstance(args, list) and args and all(isinstance(a, str) for a in args)
    assert option(dag.prepare_args(d), "--root").startswith(root + "/")
    assert option(dag.source_args(source), "--scheduler") == "tcp://h 1"
    assert option(dag.student_args(d, student, 3), "--seed") == "3"


def test_dry_run_quotes_a_data_root_with_a_space(tmp_path):
    root, work = tmp_path / "my data", tmp_path / "work dir"
    res = snakemake("-n", "-p", "--config", "sweep=cpu", f"data_root={root}",
                    f"workdir={work}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert not re.search(r"(?<![=\w])eval\b", out)  # no shell eval (bn_mode=eval is a value)
    prepare = job_words(out, "prepare-data")
    assert len(prepare) == 3, out
    for words in prepare:
        # the printed line quotes the path (one word), and bash splits it back intact
        assert option(words, "--root").startswith(f"{root}/")
        assert option(words, "--store").startswith(f"{work}/cpu/cache/")
    assert shlex.quote(option(prepare[0], "--root")) in out
    for stage in ("train", "evaluate", "report"):
        jobs = job_words(out, stage)
        assert jobs and all(w[0] == "salpipe" for w in jobs)
        # a path is one word, or the value of one `NAME=path` word (--source-model)
        assert all(re.sub(r"^[a-z0-9_]+=", "", word).startswith(f"{work}/")
                   for w in jobs for word in w if "/cpu/" in word), jobs


@pytest.mark.slow
def test_smoke_dag_runs_in_a_workdir_with_a_space(tmp_path):
    repo = copy_repo(tmp_path / "the repo")
    work = tmp_path / "work dir"
    res = snakemake("--cores", "2", "--config", "sweep=smoke", "device=cpu",
                    f"workdir={work}", cwd=repo)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = work / "smoke"
    assert (out / "report" / "report.html").is_file()
    words = first_log_line(out / "logs/train_student/shapes/standard/seed0.log")
    assert words[:7] == ["salpipe", "--device", "cpu", "--threads", "1", "train", "--store"]
    assert option(words, "--store") == f"{out}/cache/shapes.zarr"
    assert option(words, "--out") == f"{out}/runs/shapes/students/standard/seed0"
    # the log's first line is a command a user can paste: rerun the report with it
    report_log = out / "logs" / "report.log"
    line = report_log.read_text().splitlines()[0]
    (out / "report" / "report.html").unlink()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    rerun = subprocess.run(["bash", "-c", line], cwd=repo, env={**os.environ, "PATH": path},
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (out / "report" / "report.html").is_file()
    again = snakemake("-n", "--config", "sweep=smoke", "device=cpu", f"workdir={work}",
                      cwd=repo)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_shell_syntax_in_workdir_and_data_root_is_never_run(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    work = tmp_path / f"w{INJECTION}"
    root = tmp_path / f"d{INJECTION}"
    res = snakemake("--cores", "2", "--config", "sweep=smoke", "device=cpu",
                    f"workdir={work}", f"data_root={root}", cwd=repo)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    smoke = work / "smoke"
    assert (smoke / "report" / "report.html").is_file()
    words = first_log_line(smoke / "logs/evaluate/shapes/pgd_at/seed0.quick.log")
    assert option(words, "--store") == f"{smoke}/cache/shapes.zarr"

    # a real job that reads data_root: the path arrives as one word, and the job fails
    # cleanly (no CIFAR-10 files there), naming its log
    (root / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    flag = work / "cpu" / "flags" / "cifar10" / "prepared"
    res = snakemake("--cores", "1", str(flag), "--config", "sweep=cpu", "device=cpu",
                    f"workdir={work}", f"data_root={root}", cwd=repo)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and not flag.exists()
    log = work / "cpu" / "logs" / "prepare_data" / "cifar10.log"
    assert str(log) in out, out[-3000:]
    words = first_log_line(log)
    assert option(words, "--root") == f"{root}/cifar10/cifar-10-batches-py"
    assert "command not found" not in log.read_text()

    # the jobs ran in `repo` (under tmp_path); also look where a stray shell could start
    leaks = injected_files([tmp_path], [Path.cwd(), REPO, Path(tempfile.gettempdir())])
    assert not leaks, leaks

"""Fault test: ``salpipe report`` SIGKILLed at random moments (and deterministically
while filling its folder and just before swapping it in) leaves ``--out`` holding the
old report or the complete new one, never a half folder.

Compared with an uninterrupted run, only ``report.json``'s ``created`` timestamp may
differ (every figure and page is byte-identical between runs).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_report_safety import results_table, snapshot

from pipeline.report.render import MARKER
from pipeline.stages.report import run_report

REPO = Path(__file__).resolve().parents[2]
SALPIPE = Path(sys.executable).with_name("salpipe")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SALPIPE.is_file(), reason=f"no {SALPIPE}")]

# A salpipe report that kills itself halfway through filling the new folder, or with the
# new folder complete just before it is swapped in for --out.
KILL_SCRIPT = r"""
import os, signal, sys
import pipeline.report.render as render
mode = sys.argv[1]
if mode == "mid_write":
    def _write(df, out, *a, **k):
        (out / "report.md").write_text("# half")
        os.kill(os.getpid(), signal.SIGKILL)
    render._write = _write
elif mode == "before_swap":
    real = render.atomic_dir
    from contextlib import contextmanager
    @contextmanager
    def atomic_dir(out, check=None):
        with real(out, check=check) as tmp:
            yield tmp
            (tmp / "report.md").stat()  # complete
            os.kill(os.getpid(), signal.SIGKILL)
    render.atomic_dir = atomic_dir
from cli import main
sys.argv = ["salpipe", *sys.argv[2:]]
main()
"""


def _run(cmd, kill_after: float | None = None) -> float:
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=300 if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return time.monotonic() - t0
    if kill_after is None:
        assert proc.returncode == 0, err.decode()[-2000:]
    return time.monotonic() - t0


def _without_created(snap: dict) -> dict:
    marker = json.loads(snap[MARKER])
    marker.pop("created")
    return {**snap, MARKER: marker}


@pytest.fixture
def reports(tmp_path):
    """``(old results, new results, rep holding the old report, its snapshot, a copy,
    the snapshot of an uninterrupted new report)``."""
    old_res = results_table(tmp_path / "old.parquet", dataset="cifar10", value=0.8)
    new_res = results_table(tmp_path / "new.parquet", dataset="flowers17", value=0.6)
    rep = tmp_path / "out" / "rep"
    run_report([old_res], rep)
    keep = tmp_path / "old_copy"
    shutil.copytree(rep, keep)
    ref = tmp_path / "ref" / "rep"
    run_report([new_res], ref)
    # the marker names the results as given: give the same path to every run
    return old_res, new_res, rep, snapshot(rep), keep, _without_created(snapshot(ref))


def _old_or_new(rep: Path, old: dict, new: dict) -> str:
    assert rep.is_dir(), "the report folder is gone"
    snap = snapshot(rep)
    if snap == old:
        return "old"
    assert MARKER in snap, f"a half folder: {sorted(snap)}"
    assert _without_created(snap) == new, "neither the old report nor the complete new one"
    return "new"


def _leftovers_are_hidden_siblings(rep: Path) -> None:
    for p in rep.parent.iterdir():
        assert p == rep or p.name.startswith(f".{rep.name}."), p


def test_sigkilled_report_leaves_the_old_report_or_the_new_one(reports):
    _, new_res, rep, old, keep, new = reports
    cmd = [str(SALPIPE), "report", "--results", str(new_res), "--out", str(rep)]
    first = rep.parent / "first"  # an uninterrupted subprocess: its duration
    seconds = _run([str(SALPIPE), "report", "--results", str(new_res), "--out", str(first)])
    assert _without_created(snapshot(first)) == new
    shutil.rmtree(first)
    rng = random.Random(20261201)
    outcomes = []
    for _ in range(3):
        shutil.rmtree(rep)
        shutil.copytree(keep, rep)
        _run(cmd, kill_after=rng.uniform(0.3, 1.05) * seconds)
        outcomes.append(_old_or_new(rep, old, new))
        _leftovers_are_hidden_siblings(rep)
    print("outcomes:", outcomes)
    _run(cmd)  # the rerun replaces whatever is there with the new report
    assert _old_or_new(rep, old, new) == "new"


@pytest.mark.parametrize("mode", ["mid_write", "before_swap"])
def test_report_killed_while_writing_keeps_the_old_report(reports, mode):
    _, new_res, rep, old, _, new = reports
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, mode, "report", "--results",
                           str(new_res), "--out", str(rep)], cwd=REPO, env=ENV,
                          capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert _old_or_new(rep, old, new) == "old"
    _leftovers_are_hidden_siblings(rep)
    # the killed run's temp folder is hidden beside it, and the next report still runs
    assert any(p.name.startswith(".rep.") for p in rep.parent.iterdir())
    run_report([new_res], rep)
    assert _old_or_new(rep, old, new) == "new"

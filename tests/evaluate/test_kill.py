"""Fault test: ``salpipe evaluate`` SIGKILLed at random moments (and deterministically
mid-write and just before the rename) never leaves a half-written results table; the
rerun ends with the table an uninterrupted run writes.

Compared with the uninterrupted run, the columns ``created`` (a timestamp) and
``seconds`` (wall-clock time per attack) are ignored: they differ between any two runs.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.stages.evaluate import run_evaluate

REPO = Path(__file__).resolve().parents[2]
SALPIPE = Path(sys.executable).with_name("salpipe")
IGNORED = ["created", "seconds"]  # wall-clock columns: differ between any two runs
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SALPIPE.is_file(), reason=f"no {SALPIPE}")]

# A salpipe evaluate that kills itself mid-write of the temp file, or after writing it
# completely but before renaming it onto --out.
KILL_SCRIPT = r"""
import io, os, signal, sys
import pandas as pd
mode = sys.argv[1]
if mode == "mid_write":
    orig = pd.DataFrame.to_parquet
    def to_parquet(self, path, *a, **k):
        buf = io.BytesIO()
        orig(self, buf, *a, **k)
        data = buf.getvalue()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    pd.DataFrame.to_parquet = to_parquet
elif mode == "before_rename":
    real = os.replace
    def replace(src, dst, *a, **k):
        if str(dst).endswith(".parquet"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *a, **k)
    os.replace = replace
from cli import main
sys.argv = ["salpipe", *sys.argv[2:]]
main()
"""


def _args(ckpt, store, out, n=12):
    return ["--device", "cpu", "evaluate", "--model", str(ckpt), "--store", str(store),
            "--preset", "quick", "--n", str(n), "--out", str(out)]


def _run(cmd, kill_after: float | None = None) -> float:
    """Run ``cmd``; SIGKILL it after ``kill_after`` seconds (if still running)."""
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


def _stable(path: Path) -> bytes:
    """The table's bytes without the wall-clock columns."""
    df = pd.read_parquet(path)
    assert set(IGNORED) <= set(df.columns)
    buf = io.BytesIO()
    df.drop(columns=IGNORED).to_parquet(buf, index=False)
    return buf.getvalue()


def _same_as(path: Path, ref: Path) -> None:
    if path.read_bytes() == ref.read_bytes():
        return
    got, want = pd.read_parquet(path), pd.read_parquet(ref)
    pd.testing.assert_frame_equal(got.drop(columns=IGNORED), want.drop(columns=IGNORED))
    assert _stable(path) == _stable(ref)


def _only_temp_files_beside(out: Path) -> None:
    """A kill may leave the hidden temp sibling and the evaluation's journal (its
    finished attack runs, pipeline/evaluate/journal.py), never another file."""
    for p in out.parent.iterdir():
        if p != out and not (p.name.startswith(f"{out.name}.journal-")
                             and p.name.endswith(".jsonl")):
            assert p.name.startswith(f".{out.name}.") and p.name.endswith(".tmp"), p


def test_sigkilled_evaluate_leaves_the_old_table_or_the_complete_new_one(
        toy_store, toy_ckpt, tmp_path):
    salpipe = [str(SALPIPE)]
    old = tmp_path / "old.parquet"
    run_evaluate(toy_ckpt, toy_store, "test", "quick", old, "cpu", n=6)  # rows to keep
    old_bytes = old.read_bytes()
    ref = tmp_path / "ref" / "results.parquet"  # uninterrupted: old rows + n=12
    ref.parent.mkdir()
    shutil.copy(old, ref)
    seconds = _run(salpipe + _args(toy_ckpt, toy_store, ref))
    fresh = tmp_path / "fresh" / "results.parquet"  # uninterrupted, from no table
    run_evaluate(toy_ckpt, toy_store, "test", "quick", fresh, "cpu", n=12)
    rng = random.Random(20261201)
    outcomes = []
    for i in range(4):
        start_old = i < 3  # three kills of an append, one of a first write
        out = tmp_path / f"kill{i}" / "results.parquet"
        out.parent.mkdir()
        if start_old:
            shutil.copy(old, out)
        _run(salpipe + _args(toy_ckpt, toy_store, out), kill_after=rng.uniform(0.25, 1.05)
             * seconds)
        _only_temp_files_beside(out)
        if not out.exists():
            assert not start_old, "the old table was lost"
            outcomes.append("absent")
        elif start_old and out.read_bytes() == old_bytes:
            outcomes.append("old")
        else:
            _same_as(out, ref if start_old else fresh)  # complete, never partial
            outcomes.append("new")
            continue  # a rerun is a no-op (test_protocol checks that)
        _run(salpipe + _args(toy_ckpt, toy_store, out))  # the rerun completes it
        _same_as(out, ref if start_old else fresh)
    print("outcomes:", outcomes)


@pytest.mark.parametrize("mode", ["mid_write", "before_rename"])
def test_evaluate_killed_while_writing_keeps_the_old_table(toy_store, toy_ckpt, tmp_path,
                                                          mode):
    out = tmp_path / "res" / "results.parquet"
    out.parent.mkdir()
    run_evaluate(toy_ckpt, toy_store, "test", "quick", out, "cpu", n=6)
    old_bytes = out.read_bytes()
    ref = tmp_path / "ref.parquet"  # uninterrupted (in this process: same rows)
    shutil.copy(out, ref)
    run_evaluate(toy_ckpt, toy_store, "test", "quick", ref, "cpu", n=12)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, mode,
                           *_args(toy_ckpt, toy_store, out)], cwd=REPO, env=ENV,
                          capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert out.read_bytes() == old_bytes  # the old table, whole
    journals = list(out.parent.glob(f"{out.name}.journal-*.jsonl"))
    assert len(journals) == 1  # every attack run had finished: the rerun restores them
    leftover = [p for p in out.parent.iterdir() if p != out and p not in journals]
    assert len(leftover) == 1 and leftover[0].name.endswith(".tmp")  # the killed temp file
    if mode == "mid_write":
        assert leftover[0].stat().st_size > 0
    _run([str(SALPIPE), *_args(toy_ckpt, toy_store, out)])  # the rerun completes it
    _same_as(out, ref)
    assert not journals[0].exists()

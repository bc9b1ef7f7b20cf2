"""A killed evaluation resumes from its journal: the finished attack runs are restored,
not run again, and the table equals an uninterrupted run's (wall-clock columns aside)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import pipeline.evaluate.robust as robust
from pipeline.evaluate.journal import Journal
from pipeline.evaluate.table import read_results
from pipeline.stages.evaluate import run_evaluate

IGNORED = ["created", "seconds"]  # wall-clock columns: differ between any two runs


class Killed(Exception):
    """Stands in for the SIGKILL at the end of a session."""


@pytest.fixture
def calls(monkeypatch):
    """Counts run_attack calls; ``calls["kill_at"] = k`` raises on the k-th."""
    state = {"n": 0, "kill_at": None}
    real = robust.run_attack

    def counted(*a, **k):
        state["n"] += 1
        if state["kill_at"] is not None and state["n"] == state["kill_at"]:
            raise Killed(f"killed at attack run {state['n']}")
        return real(*a, **k)

    monkeypatch.setattr(robust, "run_attack", counted)
    return state


def _journals(out):
    return sorted(out.parent.glob(f"{out.name}.journal-*.jsonl"))


def _table(path):
    return read_results(path).drop(columns=IGNORED)


def _evaluate(ckpt, store, out, **kw):
    return run_evaluate(ckpt, store, "test", "quick", out, "cpu", n=10, **kw)


def test_a_killed_evaluation_resumes_where_it_stopped(toy_store, toy_ckpt, tmp_path, calls):
    ref = tmp_path / "ref" / "results.parquet"
    _evaluate(toy_ckpt, toy_store, ref)
    total = calls["n"]
    assert total == 4  # pgd5 at 1-4/255 (the transfer entry has no source here)
    assert not _journals(ref)  # removed once the table is written

    out = tmp_path / "res" / "results.parquet"
    calls.update(n=0, kill_at=3)
    with pytest.raises(Killed):
        _evaluate(toy_ckpt, toy_store, out)
    assert not out.exists()
    (journal,) = _journals(out)
    lines = journal.read_text().splitlines()
    assert json.loads(lines[0])["key"]["preset"] == "quick" and len(lines) == 1 + 2

    calls.update(n=0, kill_at=None)
    _evaluate(toy_ckpt, toy_store, out)
    assert calls["n"] == total - 2  # the two finished runs were not attacked again
    pd.testing.assert_frame_equal(_table(out), _table(ref))
    assert not _journals(out)


def test_the_restored_rows_are_the_journal_s_and_force_starts_afresh(
        toy_store, toy_ckpt, tmp_path, calls):
    """A tampered journal shows through on resume (so the rows really come from it), and
    ``force`` ignores it."""
    out = tmp_path / "res" / "results.parquet"
    calls["kill_at"] = 2
    with pytest.raises(Killed):
        _evaluate(toy_ckpt, toy_store, out)
    (journal,) = _journals(out)
    head, entry = journal.read_text().splitlines()
    entry = json.loads(entry)
    entry["rows"][0]["value"] = entry["rows"][0]["accuracy"] = 0.123
    journal.write_text(head + "\n" + json.dumps(entry) + "\n")
    calls.update(n=0, kill_at=None)
    _evaluate(toy_ckpt, toy_store, out)
    df = read_results(out)
    first = df[df["attack"] == "pgd5"].iloc[0]
    assert first["accuracy"] == 0.123 and calls["n"] == 3

    calls.update(n=0, kill_at=2)  # kill the forced run after its first attack run
    with pytest.raises(Killed):
        _evaluate(toy_ckpt, toy_store, out, force=True)
    (journal,) = _journals(out)
    assert 0.123 not in [r["accuracy"] for line in journal.read_text().splitlines()[1:]
                         for r in json.loads(line)["rows"]]


def test_a_damaged_last_line_is_dropped_and_a_foreign_journal_replaced(
        toy_store, toy_ckpt, tmp_path, calls, caplog):
    ref = tmp_path / "ref" / "results.parquet"
    _evaluate(toy_ckpt, toy_store, ref)
    out = tmp_path / "res" / "results.parquet"
    calls.update(n=0, kill_at=3)
    with pytest.raises(Killed):
        _evaluate(toy_ckpt, toy_store, out)
    (journal,) = _journals(out)
    with open(journal, "a") as f:
        f.write('{"id": "|2|pgd5|0.0117')  # a kill mid-line
    calls.update(n=0, kill_at=None)
    _evaluate(toy_ckpt, toy_store, out)
    assert calls["n"] == 2
    pd.testing.assert_frame_equal(_table(out), _table(ref))
    assert "dropped a damaged line" in caplog.text

    # a journal at this evaluation's path whose first line names another evaluation
    out2 = tmp_path / "res2" / "results.parquet"
    calls.update(n=0, kill_at=2)
    with pytest.raises(Killed):
        _evaluate(toy_ckpt, toy_store, out2)
    (journal,) = _journals(out2)
    head, *rest = journal.read_text().splitlines()
    other = json.loads(head)
    other["key"]["model_sha256"] = "another model"
    journal.write_text("\n".join([json.dumps(other), *rest]) + "\n")
    calls.update(n=0, kill_at=None)
    _evaluate(toy_ckpt, toy_store, out2)
    assert calls["n"] == 4  # nothing restored from it
    pd.testing.assert_frame_equal(_table(out2), _table(ref))
    assert "names another evaluation" in caplog.text


def test_a_journal_key_differs_with_the_preset_runs(tmp_path):
    from pipeline.evaluate.journal import journal_path
    from pipeline.evaluate.presets import AttackRun, runs_digest

    a = [AttackRun("pgd5", "pgd", 1 / 255, {"steps": 5})]
    b = [AttackRun("pgd5", "pgd", 1 / 255, {"steps": 6})]
    assert runs_digest(a) != runs_digest(b)
    key = {"preset": "p", "runs": runs_digest(a)}
    assert journal_path(tmp_path / "r.parquet", key) != journal_path(
        tmp_path / "r.parquet", {**key, "runs": runs_digest(b)})
    j = Journal(journal_path(tmp_path / "r.parquet", key), key)
    assert j.entries == {} and not j.path.exists()  # nothing written before a run ends

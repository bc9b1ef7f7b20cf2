"""A defence's evaluation (several views, survivors runs, a run on the whole defence)
killed anywhere resumes from its journal to the rows of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

import pipeline.evaluate.robust as robust
from pipeline.evaluate.journal import Journal
from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.views import evaluate_views


class Killed(Exception):
    pass


RUNS = [
    AttackRun("pgd2", "pgd", 8 / 255, {"steps": 2}),
    AttackRun("pgd2", "pgd", 4 / 255, {"steps": 2}),
    AttackRun("pgd3s", "pgd", 8 / 255, {"steps": 3}, survivors=True),
    AttackRun("noise", "uniform_noise", 8 / 255, {}, views=("whole",), survivors=True),
    AttackRun("inner", "fgsm", 4 / 255, {}, views=("nonadaptive",), survivors=True),
]


def _stable(rows):
    """Rows as text, without the wall-clock column (NaN compares equal as text)."""
    return [json.dumps({k: v for k, v in r.items() if k != "seconds"}, sort_keys=True)
            for r in rows]


@pytest.fixture
def sad_data(bn_model):
    from pipeline.config.sad import SadConfig
    from pipeline.sad.model import SADModel

    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    torch.manual_seed(1)
    x = torch.rand(12, 3, 16, 16)
    with torch.no_grad():
        y = sad(x).argmax(1)  # every example clean-correct: every run attacks some
    return sad, x, y, torch.arange(12)


def _run(sad_data, journal=None):
    sad, x, y, index = sad_data
    return evaluate_views(sad, x, y, index, RUNS, batch_size=12, journal=journal)


def test_killed_anywhere_the_rerun_gives_the_uninterrupted_rows(sad_data, tmp_path,
                                                                monkeypatch):
    real = robust.run_attack
    state = {"n": 0, "kill_at": None}

    def counted(*a, **k):
        state["n"] += 1
        if state["n"] == state["kill_at"]:
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(robust, "run_attack", counted)
    ref = _run(sad_data)
    total = state["n"]
    # pgd2 x2 and pgd3s in 4 views, inner in one, noise once on the whole defence
    assert total == 3 * 4 + 1 + 1
    broken = sum(1 for r in ref if r["view"] == "all" and r["accuracy"] < 1)
    assert broken, "no example broken: the survivors state would not be exercised"
    for kill_at in (2, 5, 9, 13, 14):
        path = tmp_path / f"j{kill_at}.jsonl"
        state.update(n=0, kill_at=kill_at)
        with pytest.raises(Killed):
            _run(sad_data, Journal(path, {"k": 1}))
        state.update(n=0, kill_at=None)
        rows = _run(sad_data, Journal(path, {"k": 1}))
        assert state["n"] == total - (kill_at - 1), kill_at
        assert _stable(rows) == _stable(ref), f"killed at run {kill_at}"

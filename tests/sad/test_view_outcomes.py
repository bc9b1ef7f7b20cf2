"""Per-example outcomes of a defence's evaluation: every view's rows, a survivors row
and the worst case over views carry the examples their accuracy counts."""

from __future__ import annotations

import pytest
import torch

from pipeline.config.sad import SadConfig
from pipeline.core.outcomes import decode_outcome
from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.views import evaluate_views
from pipeline.sad.model import SADModel


def test_views_survivors_and_the_worst_case_over_views(bn_model):
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x = torch.rand(12, 3, 16, 16)
    with torch.no_grad():
        y = sad(x).argmax(1)
    runs = [AttackRun("pgd3", "pgd", 16 / 255, {"steps": 3}, ("adaptive", "nonadaptive")),
            AttackRun("late", "pgd", 16 / 255, {"steps": 2}, ("adaptive",), survivors=True)]
    rows = evaluate_views(sad, x, y, torch.arange(12), runs,
                          views=["adaptive", "nonadaptive"], batch_size=5)
    acc = [r for r in rows if r["metric"] == "accuracy"]
    assert len(acc) >= 7
    for r in acc:
        ok = decode_outcome(r["outcome"], r["n"])
        assert ok.mean() == pytest.approx(r["accuracy"]), (r["view"], r["attack"])
    out = {(r["view"], r["attack"]): decode_outcome(r["outcome"], 12) for r in rows
           if r["metric"] == "accuracy"}
    every = out[("all", "worst_case")]
    for (view, attack), ok in out.items():
        if attack != "clean":  # nothing is robust in the worst case that one attack broke
            assert not (every & ~ok).any(), (view, attack)

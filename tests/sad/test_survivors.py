"""`survivors: true`: an entry attacks only what every earlier one left robust
(AutoAttack's protocol); the per-example worst case is that of attacking everything."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.config.sad import SadConfig
from pipeline.evaluate.presets import AttackRun, load_presets
from pipeline.evaluate.views import cell_flags, evaluate_views
from pipeline.sad.model import SADModel


def _runs(survivors: bool, eps: float = 64 / 255) -> list[AttackRun]:
    return [AttackRun("pgd1", "pgd", eps, {"steps": 1}, ("adaptive",)),
            AttackRun("pgd5", "pgd", eps, {"steps": 5}, ("nonadaptive",)),
            AttackRun("pgd10", "pgd", eps, {"steps": 10}, ("adaptive",),
                      survivors=survivors)]


def _worst(rows):
    return {r["view"]: r["accuracy"] for r in rows if r["attack"] == "worst_case"}


def test_survivors_attack_only_what_is_left_and_keep_the_worst_case(bn_model, monkeypatch):
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x = torch.rand(16, 3, 16, 16)
    with torch.no_grad():
        y = sad(x).argmax(1)  # all clean-correct
    index = torch.arange(16)
    views = ["adaptive", "nonadaptive"]
    everything = evaluate_views(sad, x, y, index, _runs(False), views=views, batch_size=4)

    import pipeline.evaluate.robust as robust

    attacked = []
    real = robust.run_attack

    def spy(model, attack, x, y, index, todo, **kw):
        attacked.append((attack.attack.steps, int(todo.sum())))
        return real(model, attack, x, y, index, todo, **kw)

    monkeypatch.setattr(robust, "run_attack", spy)
    left = evaluate_views(sad, x, y, index, _runs(True), views=views, batch_size=4)
    # the same per-example worst case over everything
    assert _worst(left)["all"] == pytest.approx(_worst(everything)["all"])
    # pgd10 saw only what pgd1 (adaptive pass) left robust: fewer than all 16
    n_pgd1 = round(next(r["accuracy"] for r in left if r["attack"] == "pgd1") * 16)
    (pgd10_todo,) = [n for steps, n in attacked if steps == 10]
    assert pgd10_todo == n_pgd1 and 0 < n_pgd1 < 16
    (row,) = [r for r in left if r["attack"] == "pgd10" and r["metric"] == "accuracy"]
    assert json.loads(row["attack_params"])["survivors"] is True
    assert any(f.startswith(f"survivors: crafted on the {n_pgd1} of 16") for f in row["flags"])
    # its row is the running worst case: at most pgd1's accuracy
    assert row["accuracy"] <= n_pgd1 / 16 + 1e-9


def test_a_later_view_skips_what_an_earlier_view_broke(bn_model):
    # survivors in the nonadaptive pass: it skips what the adaptive pass broke
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x = torch.rand(16, 3, 16, 16)
    with torch.no_grad():
        y = sad(x).argmax(1)
    runs = [AttackRun("pgd10", "pgd", 8 / 255, {"steps": 10}, ("adaptive",)),
            AttackRun("late", "pgd", 8 / 255, {"steps": 2}, ("nonadaptive",), survivors=True)]
    rows = evaluate_views(sad, x, y, torch.arange(16), runs,
                          views=["adaptive", "nonadaptive"], batch_size=4)
    adaptive = next(r["accuracy"] for r in rows if r["attack"] == "pgd10")
    late = next(r for r in rows if r["attack"] == "late" and r["metric"] == "accuracy")
    assert any(f.startswith(f"survivors: crafted on the {round(adaptive * 16)} of 16")
               for f in late["flags"])
    assert late["accuracy"] <= adaptive + 1e-9
    # the nonadaptive pass's own worst case is not lowered by the skipped examples
    assert _worst(rows)["nonadaptive"] >= late["accuracy"] - 1e-9


def test_survivors_on_a_plain_model_is_its_running_worst_case(bn_model):
    x = torch.rand(16, 3, 16, 16)
    with torch.no_grad():
        y = bn_model(x).argmax(1)
    runs = [AttackRun("pgd1", "pgd", 4 / 255, {"steps": 1}),
            AttackRun("pgd10", "pgd", 4 / 255, {"steps": 10}, survivors=True)]
    rows = evaluate_views(bn_model, x, y, torch.arange(16), runs, batch_size=4)
    pgd10 = next(r["accuracy"] for r in rows if r["attack"] == "pgd10")
    assert _worst(rows)[""] == pytest.approx(pgd10)


def test_cell_flags_compare_nothing_with_a_survivors_row():
    def row(attack, name, acc, survivors=False):
        params = {"survivors": True} if survivors else {}
        return {"attack": attack, "attack_name": name, "metric": "accuracy", "eps": 4 / 255,
                "accuracy": acc, "n": 100, "view": "whole" if name == "square" else "adaptive",
                "attack_params": json.dumps(params), "flags": []}

    rows = [row("apgd_ce", "autoattack", 0.30), row("square", "square", 0.10, True)]
    cell_flags(rows)
    assert rows[0]["flags"] == []
    rows = [row("apgd_ce", "autoattack", 0.30), row("square", "square", 0.10)]
    cell_flags(rows)
    assert any("black-box square" in f for f in rows[0]["flags"])


def test_survivors_must_be_a_boolean(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("presets:\n  p:\n    attacks:\n      - {attack: pgd, eps: 4/255, "
                 "survivors: yes please}\n")
    with pytest.raises(ConfigError, match=r"presets\.p\.attacks\[0\]\.survivors"):
        load_presets(p)


def test_the_defence_presets_run_apgd_t_and_square_on_survivors():
    presets = load_presets()
    for name in ("defence", "defence_cpu", "defence_quick"):
        survivors = {r.label for r in presets[name] if r.survivors}
        assert survivors == {"apgd_dlr_t", "square"}, name
        labels = [r.label for r in presets[name]]
        # square last of the whole-model entries: it sees the transfers' results too
        assert labels.index("square") > labels.index("transfer_seed")

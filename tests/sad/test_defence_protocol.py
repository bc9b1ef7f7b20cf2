"""The evaluation of a defence: independent random starts per attack and view, runs of
scope ``whole``, EOT only for random defences, and the sanity flags beside their cells."""

from __future__ import annotations

import torch

from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.robust import evaluate_robust, run_seed
from pipeline.evaluate.views import ViewRun, cell_flags, evaluate_views


def _row(attack, name, eps, acc, view="", n=100):
    return {"attack": attack, "attack_name": name, "eps": eps / 255, "accuracy": acc,
            "metric": "accuracy", "n": n, "view": view, "flags": []}


def test_run_seeds_differ_per_label_budget_and_view():
    a = AttackRun("pgd20", "pgd", 8 / 255, {"steps": 20})
    seeds = {run_seed(0, a), run_seed(0, AttackRun("strong_pgd", "pgd", 8 / 255)),
             run_seed(0, AttackRun("pgd20", "pgd", 4 / 255)),
             run_seed(0, ViewRun(**a.__dict__, view="adaptive")),
             run_seed(0, ViewRun(**a.__dict__, view="nonadaptive")), run_seed(1, a)}
    assert len(seeds) == 6
    assert run_seed(0, a) == run_seed(0, AttackRun("pgd20", "pgd", 8 / 255, {"steps": 20}))


def test_two_attacks_no_longer_share_a_random_start():
    """Two identical PGD-0 runs (the random start only) under different labels land on
    different points: each run draws its own streams."""
    x, y = torch.rand(8, 3, 16, 16), torch.zeros(8, dtype=torch.long)
    seen = []

    class Keep:
        def __init__(self, attack):
            self.attack = attack

        def __call__(self, model, x, y, **kw):
            out = self.attack(model, x, y, **kw)
            seen.append(out)
            return out

    class Run(AttackRun):
        def build(self, extra=None, where=None):
            return Keep(super().build(extra, where))

    runs = [Run("a", "pgd", 8 / 255, {"steps": 0, "best": "last"}),
            Run("b", "pgd", 8 / 255, {"steps": 0, "best": "last"})]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    # every example "correct": attack all of them
    y = model(x).argmax(1)
    evaluate_robust(model, x, y, torch.arange(8), runs, batch_size=8)
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_views_of_a_run_and_whole_runs_once_counting_in_the_worst_case(bn_model):
    from pipeline.config.sad import SadConfig
    from pipeline.sad.model import SADModel

    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6) % 4
    runs = [AttackRun("pgd2", "pgd", 8 / 255, {"steps": 2}),
            AttackRun("noise", "uniform_noise", 8 / 255, {}, views=("whole",)),
            AttackRun("inner", "fgsm", 8 / 255, {}, views=("nonadaptive",))]
    rows = evaluate_views(sad, x, y, torch.arange(6), runs, batch_size=6)
    noise = [r for r in rows if r["attack"] == "noise"]
    assert [r["view"] for r in noise] == ["whole"]
    assert {r["view"] for r in rows if r["attack"] == "pgd2"} == {
        "adaptive", "adaptive_bpda", "smooth", "nonadaptive"}
    assert [r["view"] for r in rows if r["attack"] == "inner"] == ["nonadaptive"]
    (worst,) = [r for r in rows if r["view"] == "all"]
    assert worst["accuracy"] <= min(r["accuracy"] for r in rows
                                    if r["attack"] in ("pgd2", "noise")) + 1e-9


def test_eot_runs_only_for_a_random_defence(bn_model):
    x, y = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    runs = [AttackRun("eot", "eot_pgd", 8 / 255, {"steps": 1, "eot_samples": 2},
                      when="random")]
    rows = evaluate_robust(bn_model.eval(), x, y, torch.arange(4), runs, batch_size=4)
    assert [r["attack"] for r in rows] == ["clean"]
    assert any("skipped eot" in f and "deterministic" in f for f in rows[0]["flags"])


def test_cell_flags_sit_beside_the_cells_they_concern():
    rows = [_row("pgd20", "pgd", 8, 0.30), _row("fgsm", "fgsm", 8, 0.20),
            _row("square", "square", 8, 0.10, view="whole"),
            _row("pgd_large", "pgd", 32, 0.40),
            _row("pgd20", "pgd", 4, 0.50, view="adaptive"),
            {"attack": "worst_case", "view": "all", "eps": 4 / 255, "accuracy": 0.20,
             "metric": "accuracy", "n": 100, "flags": [], "attack_name": "worst_case"}]
    cell_flags(rows)
    pgd = rows[0]["flags"]
    assert any("single-step fgsm" in f for f in pgd)
    assert any("black-box square" in f for f in pgd)
    assert any("black-box square" in f for f in rows[1]["flags"])  # fgsm is white-box
    assert not rows[2]["flags"]
    assert any("leaves 0.400 accuracy at 32/255" in f for f in rows[3]["flags"])
    assert any("view adaptive scores 0.500" in f and "worst case" in f
               for f in rows[4]["flags"])
    # a gap of one example is never flagged
    quiet = [_row("pgd20", "pgd", 8, 0.30), _row("fgsm", "fgsm", 8, 0.295)]
    cell_flags(quiet)
    assert quiet[0]["flags"] == []

"""Attack views (what the attack differentiates) and the sanity-curve flags."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pipeline.config.sad import SadConfig
from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.views import (
    BPDAView,
    InnerView,
    SmoothView,
    ViewAttack,
    available_views,
    evaluate_views,
    sanity_curve_flags,
    smooth_copy,
    view_model,
    with_view,
)
from pipeline.sad.model import SADModel


class Spy:
    """An attack that records the model it was handed and returns x."""

    steps = 3

    def __init__(self):
        self.seen = []

    def __call__(self, model, x, y, **kw):
        self.seen.append(model)
        return x


def test_view_model_and_view_attack(bn_model):
    sad = SADModel(bn_model, SadConfig())
    inner = view_model(sad, "nonadaptive")
    assert isinstance(inner, InnerView) and inner.network is bn_model
    assert view_model(sad, "adaptive").spec.grad_mode == "exact"
    bpda = view_model(sad, "adaptive_bpda")
    assert isinstance(bpda, BPDAView) and bpda.network is bn_model
    assert isinstance(view_model(sad, "smooth"), SmoothView)
    spy = Spy()
    ViewAttack(spy, "nonadaptive")(sad, torch.rand(1, 3, 16, 16), torch.zeros(1).long())
    assert isinstance(spy.seen[0], InnerView) and ViewAttack(spy, "adaptive").steps == 3
    with pytest.raises(ValueError, match="inner"):
        view_model(bn_model, "nonadaptive")
    with pytest.raises(ValueError, match="view must be"):
        view_model(sad, "sideways")
    assert available_views(bn_model) == []
    assert available_views(sad) == ["adaptive", "adaptive_bpda", "smooth", "nonadaptive"]
    gbp = SADModel(bn_model, SadConfig(saliency="gbp", grad_mode="bpda"))
    assert available_views(gbp) == ["adaptive_bpda", "nonadaptive"]


@pytest.mark.parametrize("view", ["adaptive", "adaptive_bpda", "smooth", "nonadaptive"])
def test_every_view_predicts_exactly_as_the_defence(bn_model, view):
    """Every attack scores its iterates with the defence: each view's forward pass is
    the defence's, bit for bit, with and without input gradients."""
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        want = sad(x)
    assert torch.equal(view_model(sad, view)(x), want)
    got = view_model(sad, view)(x.clone().requires_grad_(True))
    assert torch.equal(got.detach(), want)


def _grad(module, x, w):
    xi = x.clone().requires_grad_(True)
    return torch.autograd.grad((module(xi) * w).sum(), xi)[0]


def test_bpda_is_the_identity_through_the_whole_transformation(bn_model):
    """BPDA: the gradient is the network's at T(x) on every pixel, clipped ones too;
    the old form (saliency term detached, clip kept) got zero on clipped pixels."""
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x = torch.rand(4, 3, 16, 16) * 0.2 + 0.8  # near 1: the saliency step clips many pixels
    w = torch.randn(4, 4)
    px = sad.purify(x).detach()
    clipped = (px == 1) | (px == 0)
    assert clipped.any()
    g = _grad(view_model(sad, "adaptive_bpda"), x, w)
    want = _grad(bn_model, px, w)  # d network / d input at T(x)
    assert torch.allclose(g, want, atol=1e-6)
    assert (g[clipped] != 0).any()
    exact = _grad(view_model(sad, "adaptive"), x, w)
    assert (exact[clipped] == 0).all()


def test_smooth_view_differs_from_exact_on_a_relu_network(bn_model):
    """On a ReLU network the saliency's own gradient is zero almost everywhere, so
    ``exact`` sees only the first-order path; the Softplus surrogate does not."""
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x, w = torch.rand(4, 3, 16, 16) * 0.5 + 0.25, torch.randn(4, 4)
    smooth = _grad(view_model(sad, "smooth"), x, w)
    exact = _grad(view_model(sad, "adaptive"), x, w)
    assert torch.isfinite(smooth).all() and not torch.allclose(smooth, exact, atol=1e-6)
    copy = smooth_copy(bn_model)
    assert not any(isinstance(m, torch.nn.ReLU) for m in copy.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in bn_model.modules())  # original kept


def test_nonadaptive_view_is_the_inner_gradient_at_x(bn_model):
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x, w = torch.rand(4, 3, 16, 16), torch.randn(4, 4)
    assert torch.allclose(_grad(view_model(sad, "nonadaptive"), x, w), _grad(bn_model, x, w))


def test_views_give_different_gradients(bn_model):
    sad = SADModel(bn_model, SadConfig(ratio=0.8))
    x = torch.rand(3, 3, 16, 16)
    y = bn_model(x).argmax(1)
    grads = {}
    for view in ("adaptive", "adaptive_bpda", "nonadaptive"):
        xi = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(view_model(sad, view)(xi), y)
        grads[view] = torch.autograd.grad(loss, xi)[0]
    assert not torch.allclose(grads["adaptive"], grads["nonadaptive"])
    assert not torch.allclose(grads["adaptive_bpda"], grads["nonadaptive"])


def test_evaluate_views_tags_rows_and_scores_the_whole_defence(bn_model):
    sad = SADModel(bn_model, SadConfig(ratio=0.8)).eval()
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6) % 4
    runs = [AttackRun("pgd2", "pgd", 8 / 255, {"steps": 2})]
    assert [r.view for r in with_view(runs, "nonadaptive")] == ["nonadaptive"]
    rows = evaluate_views(sad, x, y, torch.arange(6), runs, batch_size=4)
    assert sorted({r["view"] for r in rows}) == ["adaptive", "adaptive_bpda", "all",
                                                 "nonadaptive", "smooth"]
    clean = {r["view"]: r["accuracy"] for r in rows if r["attack"] == "clean"}
    with torch.no_grad():
        expected = (sad(x).argmax(1) == y).float().mean().item()
    assert all(math.isclose(v, expected) for v in clean.values())
    for r in rows:
        if r["attack"] == "pgd2":
            assert r["accuracy"] <= clean[r["view"]] + 1e-9
    # the worst case over views: per example, so at most the best view's worst case
    (all_row,) = [r for r in rows if r["view"] == "all"]
    per_view = [r["accuracy"] for r in rows if r["attack"] == "worst_case"
                and r["view"] != "all"]
    assert all_row["eps"] == pytest.approx(8 / 255) and len(per_view) == 4
    assert all_row["accuracy"] <= min(per_view) + 1e-9
    plain = evaluate_views(bn_model, x, y, torch.arange(6), runs, batch_size=4)
    assert {r["view"] for r in plain} == {""}


def test_worst_case_over_views_is_per_example(bn_model):
    # view A fools examples {0, 1}, view B fools {2}: the per-example worst case over the
    # views fools {0, 1, 2}, lower than either view's own worst case
    from pipeline.evaluate.views import RobustRecord, _worst_over_views

    record = RobustRecord()
    record.add(8 / 255, torch.tensor([0, 1, 2, 3]), torch.tensor([False, False, True, True]))
    record.add(8 / 255, torch.tensor([0, 1, 2, 3]), torch.tensor([True, True, False, True]))
    x = torch.rand(4, 3, 16, 16)
    y = bn_model(x).argmax(1)  # all clean-correct
    (row,) = _worst_over_views(bn_model, x, y, torch.arange(4), record,
                               {"view": "", "n": 4}, {})
    assert row["accuracy"] == 0.25 and row["view"] == "all"


def _row(eps, steps, acc, loss="ce", n=100):
    return {"attack_name": "pgd", "metric": "accuracy", "eps": eps / 255, "steps": steps,
            "restarts": 1.0, "accuracy": acc, "n": n,
            "attack_params": json.dumps({"steps": steps, "loss": loss})}


def test_sanity_curve_flags():
    sane = [_row(4, 20, 0.4), _row(8, 20, 0.2), _row(16, 20, 0.05), _row(32, 20, 0.0),
            _row(8, 5, 0.3), _row(8, 50, 0.19), _row(8, 100, 0.19)]
    assert sanity_curve_flags(sane) == []
    bad = [_row(4, 20, 0.4), _row(8, 20, 0.5), _row(32, 20, 0.3), _row(8, 100, 0.6)]
    flags = sanity_curve_flags(bad)
    assert any("rises with eps" in f for f in flags)
    assert any("does not approach 0" in f for f in flags)
    assert any("more steps raise accuracy" in f for f in flags)
    # one example (1/n) of noise is tolerated; other losses are separate curves
    assert sanity_curve_flags([_row(4, 20, 0.40), _row(8, 20, 0.41)]) == []
    assert sanity_curve_flags([_row(8, 20, 0.2), _row(8, 50, 0.5, loss="cw")]) == []


def test_view_flags_catch_a_weaker_adaptive_attack():
    from pipeline.evaluate.views import view_flags

    def row(view, acc):
        return {"view": view, "attack": "strong_pgd", "eps": 8 / 255, "n": 100,
                "metric": "accuracy", "accuracy": acc}

    flags = view_flags([row("adaptive", 0.15), row("adaptive_bpda", 0.03),
                        row("nonadaptive", 0.03)])
    assert len(flags) == 1 and "view adaptive " in flags[0] and "masking" in flags[0]
    assert view_flags([row("adaptive", 0.035), row("nonadaptive", 0.03)]) == []


def test_cli_names_every_view_and_preset():
    """`salpipe evaluate --help` offers every view and names every shipped preset."""
    import yaml

    from cli import evaluate
    from pipeline.evaluate.views import VIEWS

    params = {p.name: p for p in evaluate.params}
    assert tuple(params["views"].type.choices) == VIEWS
    from pipeline.evaluate.presets import DEFAULT_PRESETS

    shipped = yaml.safe_load(DEFAULT_PRESETS.read_text())["presets"]
    for name in shipped:
        assert name in params["preset"].help, name

"""Attacks against references: torchattacks PGD, closed forms, scipy's Kendall tau,
AutoAttack with an unbounded budget, transfer from the model itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from pipeline.attacks import ATTACKS
from pipeline.attacks.cam_maps import cam_maps, kendall_tau


def _labelled(model, n=8, size=16, seed=0):
    """Images labelled by the model itself, so clean accuracy is 1."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x, model(x).argmax(1)


@pytest.mark.parametrize("loss_steps", [(5, 2 / 255), (10, 1 / 255)])
def test_pgd_equals_torchattacks(small_model, loss_steps):
    import torchattacks

    steps, alpha = loss_steps
    x, y = _labelled(small_model)
    y = (y + 1) % 10  # wrong labels: the loss keeps rising, every step matters
    ref = torchattacks.PGD(small_model, eps=8 / 255, alpha=alpha, steps=steps,
                           random_start=False)(x, y)
    ours = ATTACKS.get("pgd")(eps=8 / 255, steps=steps, step_size=alpha, random_start=False,
                              best="last")(small_model, x, y)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_pgd_best_iterate_never_below_clean_loss(small_model):
    x, y = _labelled(small_model)
    pgd = ATTACKS.get("pgd")(eps=4 / 255, steps=3, random_start=False, best="loss")
    x_adv = pgd(small_model, x, y)
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert (ce(small_model(x_adv), y, reduction="none")
                >= ce(small_model(x), y, reduction="none") - 1e-6).all()


def test_fgsm_is_one_signed_step(linear_model):
    x = torch.rand(4, 3, 4, 4)
    y = torch.tensor([0, 1, 2, 0])
    x_adv = ATTACKS.get("fgsm")(eps=0.01)(linear_model, x, y)
    xg = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(linear_model(xg), y, reduction="sum").backward()
    step = (x + 0.01 * xg.grad.sign()).clamp(0, 1)
    with torch.no_grad():
        for i in range(4):  # either the step or x (kept when the step lowered the loss)
            assert torch.allclose(x_adv[i], step[i]) or torch.allclose(x_adv[i], x[i])


def test_saliency_attack_closed_form(linear_model):
    """Gradient saliency of a linear model is the weight row: x - eps * sign(W[y])."""
    x = torch.rand(3, 3, 4, 4)
    y = torch.tensor([0, 1, 2])
    x_adv = ATTACKS.get("saliency")(eps=0.05)(linear_model, x.flatten(1).view(3, 3, 4, 4), y)
    w = linear_model[1].weight.detach()
    expect = (x - 0.05 * w[y].view(3, 3, 4, 4).sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expect)


def test_autoattack_unbounded_budget_fools_everything(small_model):
    x, y = _labelled(small_model, n=6)
    aa = ATTACKS.get("autoattack")(eps=1.0, version="standard")
    x_adv = aa(small_model, x, y, index=torch.arange(6), seed=0)
    with torch.no_grad():
        assert (small_model(x_adv).argmax(1) != y).all()


def test_pgd_and_square_unbounded_budget(small_model):
    x, y = _labelled(small_model, n=6)
    for attack in (ATTACKS.get("pgd")(eps=1.0, steps=10), ATTACKS.get("square")(eps=1.0, queries=200)):
        x_adv = attack(small_model, x, y, index=torch.arange(6))
        with torch.no_grad():
            assert (small_model(x_adv).argmax(1) != y).all(), type(attack).__name__


def test_transfer_from_itself_equals_pgd(source_ckpt):
    from pipeline.stages.loading import load_model

    model, _ = load_model(source_ckpt)
    x, y = _labelled(model)
    kw = {"index": torch.arange(8), "seed": 2}
    t = ATTACKS.get("transfer")(eps=4 / 255, source=str(source_ckpt), source_model=model,
                                attack_params={"steps": 3})(model, x, y, **kw)
    p = ATTACKS.get("pgd")(eps=4 / 255, steps=3)(model, x, y, **kw)
    assert torch.allclose(t, p)


def test_transfer_without_source_says_so(small_model):
    x, y = _labelled(small_model, n=2)
    with pytest.raises(ValueError, match="source"):
        ATTACKS.get("transfer")(eps=4 / 255)(small_model, x, y)


def test_kendall_tau_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 3, 3), generator=gen).float()  # with ties
    b = torch.rand(4, 3, 3, generator=gen)
    ours = kendall_tau(a, b)
    for i in range(4):
        ref = kendalltau(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert np.isclose(ours[i].item(), ref)


def test_cam_completeness(small_model):
    """Paper 004's CAM sums to the logit minus the bias."""
    x, y = _labelled(small_model, n=4)
    with torch.no_grad():
        cam = cam_maps(small_model, x, y).flatten(1).sum(1)
        logit = small_model(x).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(cam + small_model.fc.bias[y], logit, atol=1e-5)


def test_aai_reports_tau_over_unchanged_predictions(small_model):
    """As the reference's aai_topk: tau only where the prediction did not change."""
    x, y = _labelled(small_model)
    aai = ATTACKS.get("aai")(eps=16 / 255, steps=5)
    x_adv = aai(small_model, x, y)
    with torch.no_grad():
        same = small_model(x_adv).argmax(1) == small_model(x).argmax(1)
    tau = aai.example_metrics(small_model, x, x_adv, y)["kendall_tau"]
    assert tau.shape == (8,) and torch.isnan(tau[~same]).all() and (tau[same] <= 1).all()
    clean = aai.example_metrics(small_model, x, x, y)["kendall_tau"]
    assert torch.allclose(clean, torch.ones(8, dtype=clean.dtype))

def test_isa_succeeds_with_a_large_budget(small_model):
    x, y = _labelled(small_model, n=4)
    isa = ATTACKS.get("isa")(eps=0.5, steps=10, bisection=3)
    m = isa.example_metrics(small_model, x, isa(small_model, x, y), y)
    assert m["isa_success"].mean() >= 0.75
    ok = m["isa_success"] > 0
    assert torch.isfinite(m["discrepancy_l1"][ok]).all()
    assert torch.isnan(m["discrepancy_l1"][~ok]).all()


def test_autoattack_flags_optimisation_at_inference(small_model):
    """AutoAttack's "dynamic defense" check reaches the result flags."""
    from pipeline.attacks import collect_flags

    class Dynamic(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self.m(xg).max(1).values.sum(), xg)
            return self.m(x + 0.01 * g.sign())

    x, y = _labelled(small_model, n=4)
    # eps=1: every point falls in the first iterations, so the check is all that costs
    aa = ATTACKS.get("autoattack")(eps=1.0, version="custom", attacks=("apgd-ce",))
    with collect_flags() as flags:
        aa(Dynamic(small_model), x, y)
    assert any("dynamic defense" in f for f in flags)
    with collect_flags() as flags:
        aa(small_model, x, y)
    assert not flags

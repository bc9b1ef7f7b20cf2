"""SAT family: schedule, Eq. 9 limits (alpha = 1 pure noise, alpha = 0 exactly
-eps0 * sign(s)), transforms, several sources, PGD-SAT / TRADES-SAT branches and budgets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, StepContext
from pipeline.train.sat import (
    SAT,
    noise_probability,
    sat_perturb,
    sat_step,
    transform_map,
)

EPS = 8 / 255


def ctx(epoch=0, epochs=10, seed=0):
    return StepContext(epoch=epoch, epochs=epochs, step=0, device=torch.device("cpu"),
                       num_classes=10, generator=torch.Generator().manual_seed(seed))


def batch(n=4, size=16, seed=0, sources=("a",)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    sal = {k: torch.randn(n, 3, size, size, generator=g) for k in sources}
    return Batch(x=x, y=torch.randint(0, 10, (n,), generator=g), index=torch.arange(n),
                 saliency=sal)


def test_schedule_matches_public_code():
    """At the paper's 200 epochs, alpha ** epoch == 0.6 ** (epoch / 10): the public
    code's noise probability (``1 - np.power(0.6, epoch / 10.0)`` is the map's share)."""
    m = SAT().for_run(200)
    for epoch in (0, 1, 7, 50, 100, 199):
        assert noise_probability(m.alpha, epoch) == pytest.approx(0.6 ** (epoch / 10))


@pytest.mark.parametrize("epochs", [4, 5, 15, 30])
def test_short_run_keeps_the_schedule_shape(epochs):
    """alpha = 0.6 ** (20 / E): the noise share at a fraction f of a short run equals
    the paper's at the same fraction of 200 epochs; an explicit alpha is kept."""
    m = SAT().for_run(epochs)
    assert m.alpha == pytest.approx(0.6 ** (20 / epochs))
    for e in range(epochs):
        paper_epoch = e * 200 / epochs
        assert noise_probability(m.alpha, e) == pytest.approx(0.6 ** (paper_epoch / 10))
    assert SAT(alpha=0.9).for_run(epochs).alpha == 0.9
    assert SAT().for_run(epochs).for_run(epochs) == m  # idempotent (resume)


def test_alpha_one_is_pure_noise():
    b = batch(n=8, size=32)
    step = sat_step(b.x, b.saliency, eps0=EPS, noise_prob=1.0, transform="sign",
                    generator=torch.Generator().manual_seed(1))
    assert torch.allclose(step.abs(), torch.full_like(step, EPS))
    pos = (step > 0).float().mean().item()
    assert abs(pos - 0.5) < 0.02  # 24576 draws: 0.02 is > 6 standard deviations
    # independent of the map
    corr = (step.sign() == -b.saliency["a"].sign()).float().mean().item()
    assert abs(corr - 0.5) < 0.02


def test_alpha_zero_is_minus_eps_sign():
    b = batch()
    b.saliency["a"][0, 0, 0, :4] = 0.0  # sign(0) = 0 perturbs nothing
    step = sat_step(b.x, b.saliency, eps0=EPS, noise_prob=0.0, transform="sign",
                    generator=torch.Generator().manual_seed(1))
    assert torch.equal(step, -EPS * b.saliency["a"].sign())
    method = SAT(alpha=0.0)
    x1 = method.sat_input(b, ctx(epoch=3))
    assert torch.equal(x1, (b.x - EPS * b.saliency["a"].sign()).clamp(0, 1))
    # alpha ** 0 = 1: epoch 0 is pure noise whatever alpha (the schedule starts at noise)
    x0 = SAT(alpha=0.5).sat_input(b, ctx(epoch=0))
    assert torch.allclose((x0 - b.x).abs()[(x0 > 0) & (x0 < 1)], torch.tensor(EPS))


def test_noise_share_follows_schedule():
    b = batch(n=16, size=32)
    p = noise_probability(SAT().for_run(200).alpha, 10)  # 0.6
    step = sat_step(b.x, b.saliency, eps0=1.0, noise_prob=p, transform="sign",
                    generator=torch.Generator().manual_seed(2))
    agree = (step == -b.saliency["a"].sign()).float().mean().item()
    # a map element is taken w.p. 1 - p, and random noise agrees with it half the time
    assert agree == pytest.approx((1 - p) + p / 2, abs=0.02)


def test_transforms():
    s = torch.tensor([[[[-2.0, 0.0], [1.0, 3.0]]]])
    assert torch.equal(transform_map(s, "sign"), s.sign())
    assert torch.allclose(transform_map(s, "minmax"), (s + 2) / 5)
    assert torch.equal(transform_map(s, "raw"), s.clamp(-1, 1))
    for how in ("sign", "minmax", "raw"):  # idempotent: pre-applying at load is safe
        t = transform_map(s, how)
        assert torch.equal(transform_map(t, how), t)
    with pytest.raises(ValueError, match="transform"):
        SAT(transform="maxabs")


def test_several_sources_one_per_image():
    n = 64
    x = torch.full((n, 3, 4, 4), 0.5)
    sal = {"a": torch.ones(n, 3, 4, 4), "b": -torch.ones(n, 1, 4, 4)}  # 1-ch broadcast
    out = sat_perturb(x, sal, eps0=0.1, noise_prob=0.0, transform="sign",
                      generator=torch.Generator().manual_seed(0))
    per_image = (out - x).flatten(1)
    from_a = torch.allclose(per_image, torch.full_like(per_image, -0.1))
    assert from_a is False  # not all images took source a
    rows = [(r == r[0]).all().item() and abs(abs(r[0].item()) - 0.1) < 1e-6
            for r in per_image]
    assert all(rows)  # each image took exactly one source
    share_a = (per_image[:, 0] < 0).float().mean().item()
    assert 0.25 < share_a < 0.75


@settings(max_examples=15, deadline=None)
@given(eps=st.integers(1, 16), epoch=st.integers(0, 30), seed=st.integers(0, 99),
       how=st.sampled_from(["sign", "minmax", "raw"]))
def test_sat_budget(eps, epoch, seed, how):
    b = batch(seed=seed)
    b.saliency["a"] *= 5  # raw maps beyond [-1, 1] are clipped into the budget
    out = SAT(eps0=eps / 255, transform=how).sat_input(b, ctx(epoch=epoch, seed=seed))
    assert (out - b.x).abs().max() <= eps / 255 + 1e-6
    assert out.min() >= 0 and out.max() <= 1


def _model():
    return build_model("small_cnn", 10, width=8).train()


@pytest.mark.parametrize("name", ["pgd_sat", "trades_sat"])
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 50), eps=st.integers(2, 12))
def test_mixed_budgets(name, seed, eps):
    """Both branches stay within eps (with eps0 = eps)."""
    method = TRAINING.get(name)(eps=eps / 255, eps0=eps / 255, steps=2,
                                step_size=eps / 510)
    b = batch(seed=seed)
    out = method.perturbed(_model(), b, ctx(epoch=5, seed=seed))
    assert (out - b.x).abs().max() <= eps / 255 + 1e-6
    assert out.min() >= 0 and out.max() <= 1


def test_pgd_sat_branches_and_official_overshoot():
    b = batch(n=8)
    model = _model()
    sat_only = TRAINING.get("pgd_sat")(p=1.0, alpha=0.0)
    out = sat_only.perturbed(model, b, ctx(epoch=4))
    assert torch.equal(out, (b.x - EPS * b.saliency["a"].sign()).clamp(0, 1))
    official = TRAINING.get("pgd_sat")(p=1.0, alpha=0.0, official=True)
    over = (official.perturbed(model, b, ctx(epoch=4)) - b.x).abs().max().item()
    assert EPS + 1e-4 < over <= 2 * EPS + 1e-6  # the public code's 2-eps overshoot
    pgd_only = TRAINING.get("pgd_sat")(p=0.0, steps=2)
    torch.manual_seed(0)
    out = pgd_only.perturbed(model, b, ctx())
    assert not torch.equal(out, sat_only.perturbed(model, b, ctx(epoch=4)))
    # about half the batches take each branch (one coin per batch)
    g = torch.Generator().manual_seed(0)
    from pipeline.train.method import coin
    share = sum(coin(0.5, g, torch.device("cpu")) for _ in range(400)) / 400
    assert 0.4 < share < 0.6


@pytest.mark.parametrize("name", ["sat", "pgd_sat", "trades_sat"])
def test_loss_contract(name):
    method = TRAINING.get(name)(**({"steps": 2} if name != "sat" else {}))
    assert method.needs_saliency
    b = batch()
    x0 = b.x.clone()
    model = _model()
    loss = method.batch_loss(model, b, ctx(epoch=2)).loss
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert model.training and torch.equal(b.x, x0)
    with pytest.raises(ValueError, match="saliency source"):
        method.batch_loss(model, Batch(x=b.x, y=b.y, index=b.index), ctx())


@pytest.mark.parametrize("name", ["pgd_sat", "trades_sat"])
def test_sat_step_never_exceeds_eps(name):
    with pytest.raises(ValueError, match="eps0"):
        TRAINING.get(name)(eps=4 / 255, eps0=8 / 255)

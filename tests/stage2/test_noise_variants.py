"""PGD / TRADES + uniform noise: the coin variants (``pgd_at_uniform``,
``trades_uniform``) against a transcription of the public SAT code's ``attack4``, and
the additive variants (``pgd_at_uniform_add``, ``trades_uniform_add``), which may leave
the eps ball."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, StepContext

EPS = 8 / 255
COIN = ["pgd_at_uniform", "trades_uniform"]
ADD = ["pgd_at_uniform_add", "trades_uniform_add"]


def reference_attack4(inputs, attack, gen, p=0.5, eps=8 / 255):
    """``attack4`` of Puneet2000/SAT_ECML2020 ``attack.py`` (``AttackPGD`` and
    ``AttackTRADES`` alike): one Bernoulli(p) draw per batch; on 1 the clean batch plus
    ``U[-8/255, 8/255]``, clamped to [0, 1], else the attack's example. Draws come
    from ``gen`` (the code: ``Bernoulli.sample()`` and ``uniform_``); ``attack(gen)``
    runs the attack with what is left of ``gen``. Returns ``(x_adv, took_noise)``."""
    if bool(torch.rand((), generator=gen) < p):
        u = torch.rand(inputs.shape, generator=gen)
        return torch.clamp(inputs.detach() + (2 * u - 1) * eps, 0, 1), True
    return attack(gen), False


def ctx(gen):
    return StepContext(epoch=0, epochs=1, step=0, device=torch.device("cpu"),
                       num_classes=10, generator=gen)


def batch(n=8, seed=0, low=0.0, high=1.0):
    g = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, 3, 16, 16, generator=g)
    return Batch(x=x, y=torch.randint(0, 10, (n,), generator=g), index=torch.arange(n))


def model():
    torch.manual_seed(0)
    return build_model("small_cnn", 10, width=8).train()


def test_defaults():
    assert TRAINING.get("pgd_at_uniform")().p == 0.5
    assert TRAINING.get("trades_uniform")().beta == 1.0
    assert TRAINING.get("trades_uniform")().p == 0.5
    assert TRAINING.get("pgd_at_uniform_add")().noise_eps == EPS
    assert TRAINING.get("trades_uniform_add")().beta == 6.0
    with pytest.raises(ValueError, match="p must be in"):
        TRAINING.get("pgd_at_uniform")(p=1.5)


@pytest.mark.parametrize("name", COIN)
def test_coin_variant_is_attack4(name):
    """Same draws as ``attack4``: the noise input on noise batches (not the attack's),
    the attack's own example on attack batches; always within eps and in [0, 1]."""
    method, net, b = TRAINING.get(name)(steps=2), model(), batch()
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)  # PGD's random start comes from the global RNG
        ours = method.perturbed(net, b, ctx(torch.Generator().manual_seed(seed)))
        torch.manual_seed(seed)
        ref, noisy = reference_attack4(
            b.x, lambda g: method.adversarial(net, b, ctx(g)),
            torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        torch.rand((), generator=g)  # the coin, so the attack gets the draws after it
        own = method.adversarial(net, b, ctx(g))  # the attack's own example
        assert torch.equal(ours, ref)
        assert torch.equal(ours, own) != noisy
        assert (ours - b.x).abs().max() <= EPS + 1e-6
        assert ours.min() >= 0 and ours.max() <= 1
        seen.add(noisy)
    assert seen == {True, False}


@pytest.mark.parametrize("name", COIN)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_coin_frequency(name, p, monkeypatch):
    """One coin per batch from ``ctx.generator``: the noise share is about ``p``."""
    cls = TRAINING.get(name)
    sentinel = torch.full((2, 3, 4, 4), -1.0)
    monkeypatch.setattr(cls, "adversarial", lambda self, m, b, c: sentinel)
    method, b = cls(p=p), batch(n=2, seed=1)
    gen, n = torch.Generator().manual_seed(7), 1000
    noisy = sum(method.perturbed(None, b, ctx(gen)) is not sentinel for _ in range(n))
    assert abs(noisy / n - p) < 0.05
    if p in (0.0, 1.0):
        assert noisy == p * n


@pytest.mark.parametrize("name", ADD)
def test_additive_variant_can_exceed_eps(name):
    """Noise on top of the finished attack: up to eps + noise_eps, beyond eps."""
    method, net = TRAINING.get(name)(steps=3), model()
    b = batch(low=0.25, high=0.75)  # away from the box, so [0, 1] clips nothing
    torch.manual_seed(0)
    ours = method.perturbed(net, b, ctx(torch.Generator().manual_seed(0)))
    d = (ours - b.x).abs().max()
    assert EPS + 1e-3 < d <= EPS + method.noise_eps + 1e-6
    assert ours.min() >= 0 and ours.max() <= 1


@pytest.mark.parametrize("name", ["trades_uniform", "trades_uniform_add"])
def test_trades_noise_goes_into_kl_clean_ce_stays(name):
    """``CE(model(x), y) + beta * KL(model(x) || model(x'))`` at the perturbed x'."""
    method, net, b = TRAINING.get(name)(steps=2), model().eval(), batch()
    torch.manual_seed(3)
    loss = method.batch_loss(net, b, ctx(torch.Generator().manual_seed(3))).loss
    torch.manual_seed(3)
    x_prime = method.perturbed(net, b, ctx(torch.Generator().manual_seed(3)))
    logits = net(b.x)
    kl = F.kl_div(F.log_softmax(net(x_prime), 1), F.softmax(logits, 1),
                  reduction="sum") / len(b.x)
    want = F.cross_entropy(logits, b.y) + method.beta * kl
    assert torch.allclose(loss, want, atol=1e-5)

"""Training methods: registry contract, budgets (property-based), TRADES vs its reference."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.attacks.trades_kl import TradesKL
from pipeline.config import ConfigError, build_method
from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, Loss, StepContext
from pipeline.train.pgd_at import PGDAT


def _ctx(bn_mode="eval", seed=0):
    return StepContext(
        epoch=0,
        epochs=1,
        step=0,
        device=torch.device("cpu"),
        num_classes=10,
        bn_mode=bn_mode,
        generator=torch.Generator().manual_seed(seed),
    )


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g)
    return Batch(x=x, y=torch.randint(0, 10, (n,), generator=g), index=torch.arange(n))


@pytest.mark.parametrize("name", TRAINING.names())
def test_contract(name):
    """Every method: frozen dataclass, scalar finite loss with gradients, x and mode kept."""
    method = build_method(
        TRAINING,
        name,
        {"steps": 2} if "steps" in _fields(name) else {},
        where="train.method",
    )
    assert dataclasses.is_dataclass(method)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(method, dataclasses.fields(method)[0].name if _fields(name) else "x", 1)
    base = build_model("small_cnn", 10, width=8).train()
    batch = _batch()
    if method.needs_saliency:  # stage-two methods: one synthetic map and mask source
        g = torch.Generator().manual_seed(1)
        batch.saliency = {"t.map": torch.randn(batch.x.shape, generator=g)}
        batch.masks = {"t.mask": torch.rand(4, 1, 16, 16, generator=g) > 0.5}
    x0 = batch.x.clone()
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        model = copy.deepcopy(base)  # BN running stats move in train mode
        loss = method.batch_loss(model, batch, _ctx(bn_mode="eval", seed=3)).loss
        losses.append(loss.detach())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.training
    assert torch.equal(batch.x, x0)
    assert torch.equal(losses[0], losses[1])  # same seed, same loss
    assert isinstance(method.needs_saliency, bool)


def _fields(name):
    return {f.name for f in dataclasses.fields(TRAINING.get(name))}


def test_config_typo_names_key():
    with pytest.raises(ConfigError, match="stesp.*did you mean 'steps'"):
        build_method(TRAINING, "pgd_at", {"stesp": 3}, where="train.method")
    with pytest.raises(ConfigError, match="train.method.eps"):
        build_method(TRAINING, "pgd_at", {"eps": "8/0"}, where="train.method")
    m = build_method(TRAINING, "pgd_at", {"eps": "4/255"}, where="train.method")
    assert m.eps == 4 / 255


@settings(max_examples=12, deadline=None)
@given(
    eps_k=st.integers(1, 16),
    steps=st.integers(1, 3),
    step_k=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    bn_mode=st.sampled_from(["eval", "train"]),
)
def test_pgd_at_example_in_ball(eps_k, steps, step_k, seed, bn_mode):
    model = build_model("small_cnn", 10, width=8).train()
    method = PGDAT(eps=eps_k / 255, steps=steps, step_size=step_k / 255)
    batch = _batch(seed=seed)
    batch.x[0] = 0.0  # corners of the pixel box exercise the [0, 1] clamp
    batch.x[1] = 1.0
    x_adv = method.adversarial(model, batch, _ctx(bn_mode))
    assert (x_adv - batch.x).abs().max() <= eps_k / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert model.training


@settings(max_examples=8, deadline=None)
@given(eps_k=st.integers(1, 16), steps=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_trades_example_in_ball(eps_k, steps, seed):
    model = build_model("small_cnn", 10, width=8).train()
    x = _batch(seed=seed).x
    attack = TradesKL(eps=eps_k / 255, step_size=2 / 255, steps=steps, reference=True)
    x_adv = attack(model, x, torch.zeros(len(x), dtype=torch.long))
    assert (x_adv - x).abs().max() <= eps_k / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize(
    "name,base", [("pgd_at_uniform", 8), ("trades_uniform", 8), ("uniform_noise", 0)]
)
def test_noise_variants_bounded(name, base, monkeypatch):
    """Noise variants: |x' - x| <= eps + noise_eps, in [0, 1], and noise really present."""
    method = build_method(TRAINING, name, {}, where="m")
    seen = {}
    model = build_model("small_cnn", 10, width=8).train()
    real_forward = model.forward

    def spy(x):
        seen.setdefault("inputs", []).append(x.detach().clone())
        return real_forward(x)

    monkeypatch.setattr(model, "forward", spy)
    batch = _batch()
    method.batch_loss(model, batch, _ctx())
    last = seen["inputs"][-1]  # the input of the loss term (after noise)
    bound = (base + 8) / 255 + 1e-6
    assert (last - batch.x).abs().max() <= bound
    assert last.min() >= 0 and last.max() <= 1
    assert not torch.equal(last, batch.x)


def _reference_trades_loss(model, x, y, step_size, eps, steps, beta, gen):
    """A transcription of yaodongyu/TRADES ``trades_loss`` (eval-mode attack)."""
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, generator=gen)
    p_nat = F.softmax(model(x), dim=1)
    for _ in range(steps):
        x_adv.requires_grad_()
        loss_kl = torch.nn.KLDivLoss(reduction="sum")(
            F.log_softmax(model(x_adv), 1), p_nat
        )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / len(x)) * torch.nn.KLDivLoss(reduction="sum")(
        F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1)
    )
    return loss_natural + beta * loss_robust


def test_trades_matches_reference():
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, width=8)
    batch = _batch(n=6)
    method = build_method(TRAINING, "trades", {"steps": 3}, where="m")
    # BN in train mode for the loss: run both on copies so running stats match
    m1, m2 = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    ours = method.batch_loss(m1, batch, _ctx("eval", seed=7)).loss
    ref = _reference_trades_loss(
        m2, batch.x, batch.y, 2 / 255, 8 / 255, 3, 6.0, torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert ours > F.cross_entropy(m1(batch.x), batch.y) - 1e-6


def _reference_trades_inner(model, x, step_size, eps, steps, gen):
    """The inner maximisation of yaodongyu/TRADES ``trades_loss`` (eval-mode attack)."""
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, generator=gen)
    p_nat = F.softmax(model(x), dim=1)
    for _ in range(steps):
        x_adv.requires_grad_()
        loss_kl = torch.nn.KLDivLoss(reduction="sum")(
            F.log_softmax(model(x_adv), 1), p_nat
        )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    return torch.clamp(x_adv, 0.0, 1.0)


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_trades_inner_maximisation_is_the_reference_bit_for_bit(steps):
    torch.manual_seed(0)
    model = build_model("resnet10", 10, width=8).train()
    batch = _batch(n=6)
    method = build_method(TRAINING, "trades", {"steps": steps}, where="m")
    ours = method.adversarial(model, batch, _ctx("eval", seed=7))
    ref = _reference_trades_inner(model, batch.x, 2 / 255, 8 / 255, steps,
                                  torch.Generator().manual_seed(7))
    assert torch.equal(ours, ref)
    assert model.training


@pytest.mark.parametrize("name", TRAINING.names())
def test_loss_logits_are_the_last_forward(name):
    """``batch_loss`` returns the logits of its last forward pass (the logged accuracy);
    for the Int family, whose last pass is one forward of ``cat([x, x_adv])``, its
    adversarial half."""
    method = build_method(TRAINING, name, {"steps": 2} if "steps" in _fields(name) else {},
                          where="train.method")
    model = build_model("small_cnn", 10, width=8).train()
    batch = _batch()
    g = torch.Generator().manual_seed(1)
    batch.saliency = {"t.map": torch.randn(batch.x.shape, generator=g)}
    batch.masks = {"t.mask": torch.rand(4, 1, 16, 16, generator=g) > 0.5}
    seen = []
    hook = model.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        out = method.batch_loss(model, batch, _ctx(seed=2))
    finally:
        hook.remove()
    assert isinstance(out, Loss)
    assert out.logits.shape == (4, 10)
    last = seen[-1]
    assert out.logits is last or (out.logits._base is last and last.shape == (8, 10)
                                  and torch.equal(out.logits, last[4:]))


def test_pgd_at_raises_loss():
    """The PGD example has a higher CE than the clean input (the attack attacks)."""
    model = build_model("small_cnn", 10, width=8).eval()
    batch = _batch(n=16)
    x_adv = PGDAT(steps=5).adversarial(model, batch, _ctx())
    assert F.cross_entropy(model(x_adv), batch.y) > F.cross_entropy(
        model(batch.x), batch.y
    )

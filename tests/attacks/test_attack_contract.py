"""Every registered attack: budget, box, shape, mode restored, determinism (property tests)."""

from __future__ import annotations

import pytest
import torch
from cheap_attacks import CHEAP, build_cheap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.attacks import ATTACKS


def test_every_attack_has_cheap_params():
    assert set(ATTACKS.names()) == set(CHEAP), "register new attacks in tests/attacks/cheap_attacks.py"


@pytest.mark.parametrize("name", ATTACKS.names())
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(eps_k=st.sampled_from([0, 1, 4, 16, 255]), seed=st.integers(0, 2**16), train=st.booleans())
def test_budget_box_and_mode(name, eps_k, seed, train, small_model, source_ckpt):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, 16, 16, generator=gen)
    x[0, 0, :2] = 0.0  # pixels at the box edges must stay inside [0, 1]
    x[1, 1, :2] = 1.0
    y = torch.randint(0, 10, (3,), generator=gen)
    eps = eps_k / 255
    attack = build_cheap(name, eps, source_ckpt)
    small_model.train(train)
    x0 = x.clone()
    x_adv = attack(small_model, x, y, index=torch.arange(3), seed=seed)
    assert small_model.training == train
    assert torch.equal(x, x0)
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    assert all(p.grad is None for p in small_model.parameters())


@pytest.mark.parametrize("name", ATTACKS.names())
def test_same_seed_same_output(name, small_model, source_ckpt):
    x = torch.rand(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3])
    attack = build_cheap(name, 8 / 255, source_ckpt)
    a = attack(small_model, x, y, index=torch.arange(4), seed=5)
    b = attack(small_model, x, y, index=torch.arange(4), seed=5)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["pgd", "uniform_noise", "trades_kl", "eot_pgd", "fgsm"])
def test_per_example_streams_do_not_depend_on_batch(name, small_model):
    """Example i gets the same result alone or in a batch (streams keyed by index)."""
    x = torch.rand(5, 3, 16, 16)
    y = torch.arange(5)
    attack = build_cheap(name, 8 / 255)
    full = attack(small_model, x, y, index=torch.arange(10, 15), seed=1)
    part = attack(small_model, x[2:4], y[2:4], index=torch.arange(12, 14), seed=1)
    assert torch.allclose(full[2:4], part, atol=1e-6)

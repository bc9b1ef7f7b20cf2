"""PGD-SAT's PGD branch is the PGD-AT example: same seed, same random start, same
output."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import build_model
from pipeline.train import Batch, StepContext
from pipeline.train.pgd_at import PGDAT
from pipeline.train.pgd_sat import PGDSAT


def ctx(seed):
    return StepContext(epoch=2, epochs=10, step=0, device=torch.device("cpu"),
                       num_classes=10, generator=torch.Generator().manual_seed(seed))


def batch(seed=0, n=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g)
    return Batch(x=x, y=torch.randint(0, 10, (n,), generator=g), index=torch.arange(n),
                 saliency={"t.map": torch.randn(x.shape, generator=g)})


def pgd_example(net, b, seed, **kw):
    torch.manual_seed(seed)  # PGD's random start draws from the global RNG
    return PGDAT(**kw).adversarial(net, b, ctx(seed))


@pytest.mark.parametrize("random_start", [True, False])
def test_forced_pgd_branch_is_pgd_at(random_start):
    """p = 0: every batch takes the PGD branch; the coin draws from ``ctx.generator``,
    not from the global RNG, so both sides get the same random start."""
    net = build_model("small_cnn", 10, width=8).train()
    kw = {"eps": 8 / 255, "steps": 3, "step_size": 2 / 255,
          "random_start": random_start}
    for seed in range(3):
        b = batch(seed)
        torch.manual_seed(seed)
        ours = PGDSAT(p=0.0, **kw).perturbed(net, b, ctx(seed))
        assert torch.equal(ours, pgd_example(net, b, seed, **kw))
        assert net.training


def test_pgd_branch_under_the_coin_is_pgd_at():
    """p = 0.5: whenever the coin (the first draw of ``ctx.generator``) picks PGD, the
    input is the PGD-AT example; otherwise it is not."""
    net = build_model("small_cnn", 10, width=8).train()
    kw = {"eps": 8 / 255, "steps": 2, "step_size": 2 / 255}
    picked = set()
    for seed in range(10):
        b = batch(seed)
        first = torch.rand((), generator=torch.Generator().manual_seed(seed))
        sat_branch = bool(first < 0.5)
        torch.manual_seed(seed)
        ours = PGDSAT(p=0.5, **kw).perturbed(net, b, ctx(seed))
        assert torch.equal(ours, pgd_example(net, b, seed, **kw)) != sat_branch
        picked.add(sat_branch)
    assert picked == {True, False}

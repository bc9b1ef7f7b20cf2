"""SAT with several saliency sources (paper 000, Table 7): ``mix="image"`` draws a
source per image per step, ``mix="epoch"`` one uniform draw per epoch for all images
(the public code's ``student_ensemble.py``), reproducible from the run's seed."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import build_method
from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, StepContext
from pipeline.train.sat import SAT, epoch_source, pick_sources, sat_step

EPS = 8 / 255
N = 32


def ctx(epoch=1, seed=0, generator=None):
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    return StepContext(epoch=epoch, epochs=50, step=0, device=torch.device("cpu"),
                       num_classes=10, generator=gen)


def two_sources(n=N, size=4, channels_b=3):
    """Source ``a`` is +1 everywhere, ``b`` is -1 (optionally one channel)."""
    return {"a": torch.ones(n, 3, size, size), "b": -torch.ones(n, channels_b, size, size)}


def batch(n=N, sources=None):
    sal = two_sources(n) if sources is None else sources
    return Batch(x=torch.full((n, 3, 4, 4), 0.5), y=torch.zeros(n, dtype=torch.long),
                 index=torch.arange(n), saliency=sal)


def sources_taken(step: torch.Tensor) -> list[str]:
    """With alpha = 0 past epoch 0, delta = -sign(s): a step of -eps is source a."""
    flat = step.flatten(1)
    assert torch.allclose(flat.abs(), torch.full_like(flat, EPS))
    assert (flat == flat[:, :1]).all()  # each image took exactly one source
    return ["a" if v < 0 else "b" for v in flat[:, 0].tolist()]


def test_default_is_image():
    assert SAT().mix == "image"
    assert TRAINING.get("pgd_sat")().mix == "image"
    assert TRAINING.get("trades_sat")().mix == "image"


def test_image_mix_uses_both_sources_within_a_batch():
    method = SAT(alpha=0.0)
    taken = sources_taken(method.sat_delta(batch(), ctx(epoch=3)))
    assert set(taken) == {"a", "b"}


@pytest.mark.parametrize("channels_b", [3, 1])  # a 1-channel map is broadcast
def test_epoch_mix_one_source_per_epoch(channels_b):
    method = SAT(alpha=0.0, mix="epoch")
    b = batch(sources=two_sources(channels_b=channels_b))
    gen = torch.Generator().manual_seed(5)
    per_epoch = []
    for epoch in range(1, 21):
        c = ctx(epoch=epoch, generator=gen)
        steps = [sources_taken(method.sat_delta(b, c)) for _ in range(3)]  # 3 steps
        assert all(len(set(s)) == 1 for s in steps), "every image of a batch: one source"
        assert len({s[0] for s in steps}) == 1, "every step of an epoch: the same source"
        per_epoch.append(steps[0][0])
        # documented rule: the uniform draw of epoch_source(seed, epoch), sorted names
        assert per_epoch[-1] == "ab"[epoch_source(2, epoch, gen)]
    assert set(per_epoch) == {"a", "b"}  # the source changes across epochs


def test_epoch_source_is_uniform_reproducible_and_stateless():
    g = torch.Generator().manual_seed(11)
    draws = [epoch_source(2, e, g) for e in range(400)]
    assert 0.4 < sum(draws) / 400 < 0.6  # fair coin: 400 draws, sd 0.025
    assert {epoch_source(3, e, g) for e in range(60)} == {0, 1, 2}
    state = g.get_state()
    assert torch.equal(g.get_state(), state)  # drawing consumed nothing
    # a resumed run (generator restored from its saved state) draws the same sources
    resumed = torch.Generator()
    torch.rand(7, generator=g)
    resumed.set_state(g.get_state())
    assert [epoch_source(2, e, resumed) for e in range(400)] == draws
    # another seed, another sequence
    other = torch.Generator().manual_seed(12)
    assert [epoch_source(2, e, other) for e in range(400)] != draws


def test_epoch_mix_does_not_touch_the_method_rng():
    sal = two_sources()
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    out = pick_sources(sal, g, N, mix="epoch", epoch=4)
    assert torch.equal(g.get_state(), before)
    assert torch.equal(out, sal["ab"[epoch_source(2, 4, g)]])
    pick_sources(sal, g, N, mix="image")
    assert not torch.equal(g.get_state(), before)


def test_one_source_is_unchanged_by_mix():
    sal = {"a": torch.randn(N, 3, 4, 4)}
    x = torch.rand(N, 3, 4, 4)
    for mix in ("image", "epoch"):
        assert torch.equal(pick_sources(sal, torch.Generator(), N, mix=mix, epoch=3),
                           sal["a"])
    a = sat_step(x, sal, eps0=EPS, noise_prob=0.3, transform="sign",
                 generator=torch.Generator().manual_seed(2), mix="epoch", epoch=2)
    b = sat_step(x, sal, eps0=EPS, noise_prob=0.3, transform="sign",
                 generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_bad_mix_is_refused():
    with pytest.raises(ValueError, match="mix"):
        SAT(mix="batch")
    with pytest.raises(ValueError, match="mix"):
        TRAINING.get("pgd_sat")(mix="step")
    with pytest.raises(ValueError, match="mix"):
        pick_sources(two_sources(), None, N, mix="per_image")
    assert build_method(TRAINING, "sat", {"mix": "epoch"}, "train.x").mix == "epoch"


def test_pgd_sat_saliency_branch_mixes_per_epoch():
    method = TRAINING.get("pgd_sat")(p=1.0, alpha=0.0, mix="epoch")
    model = build_model("small_cnn", 10, width=4).train()
    b = batch()
    for epoch in range(1, 6):
        c = ctx(epoch=epoch, seed=3)
        taken = sources_taken(method.perturbed(model, b, c) - b.x)
        assert set(taken) == {"ab"[epoch_source(2, epoch, c.generator)]}

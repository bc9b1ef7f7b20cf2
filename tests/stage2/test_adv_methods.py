"""SIP-AT masking, the Int family's discrepancy (closed form) and ramp, FAT's early stop,
PART's per-pixel budget; budgets of every method (property-based, small)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, StepContext
from pipeline.train.fat import early_stopped_pgd
from pipeline.train.interpretation import discrepancy, logits_and_cams
from pipeline.train.part import important_pixels

EPS = 8 / 255


def ctx(epoch=0, epochs=10, seed=0, bn_mode="eval"):
    return StepContext(epoch=epoch, epochs=epochs, step=0, device=torch.device("cpu"),
                       num_classes=10, bn_mode=bn_mode,
                       generator=torch.Generator().manual_seed(seed))


def batch(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    m = torch.rand(n, 1, size, size, generator=g) < 0.5
    return Batch(x=x, y=torch.randint(0, 10, (n,), generator=g), index=torch.arange(n),
                 masks={"annotation.mask": m})


def model(kind="small_cnn"):
    return build_model(kind, 10, width=8).train()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 99), invert=st.booleans())
def test_sip_never_perturbs_masked_pixels(seed, invert):
    b = batch(seed=seed)
    m = TRAINING.get("sip_at")(steps=3, invert=invert)
    out = m.adversarial(model(), b, ctx(seed=seed))
    frozen = b.masks["annotation.mask"] if not invert else ~b.masks["annotation.mask"]
    diff = (out - b.x).abs()
    assert diff[frozen.expand_as(diff)].max() == 0  # exactly untouched
    assert diff.max() <= EPS + 1e-6 and diff[~frozen.expand_as(diff)].max() > 0


def test_sip_mask_source_errors():
    b = batch()
    with pytest.raises(KeyError, match="nope"):
        TRAINING.get("sip_at")(source="nope").adversarial(model(), b, ctx())
    b.masks = {}
    with pytest.raises(ValueError, match="exactly one mask"):
        TRAINING.get("sip_at")().adversarial(model(), b, ctx())


def test_discrepancy_closed_form():
    # 3 classes, 1x2 CAMs; y = 0
    cams = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]], [[3.0, -1.0]]]])
    cams_adv = torch.tensor([[[[0.0, 4.0]], [[1.0, 1.0]], [[3.0, 1.0]]]])
    logits_adv = torch.tensor([[5.0, math.log(1.0), math.log(3.0)]])
    y = torch.tensor([0])
    # l1: class 0: 1 + 2 = 3; class 1: 2; class 2: 2. p~ over {1, 2} = (1/4, 3/4)
    want = 0.5 * 3 + 0.5 * (0.25 * 2 + 0.75 * 2)
    assert discrepancy(cams, cams_adv, logits_adv, y).item() == pytest.approx(want)
    assert discrepancy(cams, cams_adv, logits_adv, y, one_class=True).item() == 3.0
    # the true logit does not weigh the other classes; p~ is differentiable
    la = logits_adv.clone().requires_grad_(True)
    discrepancy(cams, cams_adv, la, y).backward()
    assert la.grad[0, 0] == 0 and la.grad[0, 1:].abs().sum() == 0  # equal l1: no signal
    cams_adv[0, 2] += 1
    la.grad = None
    discrepancy(cams, cams_adv, la, y).backward()
    assert la.grad[0, 2] > 0 > la.grad[0, 1]


def test_cams_match_model():
    net = model("resnet10").eval()
    x = torch.rand(2, 3, 16, 16)
    logits, cams = logits_and_cams(net, x)
    assert torch.allclose(logits, net(x), atol=1e-5)
    # CAM mean over pixels + bias = logit (GAP architecture)
    assert torch.allclose(cams.mean((2, 3)) + net.fc.bias, logits, atol=1e-4)


def test_int_eps_ramp_and_variants():
    # the ramp per optimiser step (the public schedule: tests/stage2/test_int_reference.py)
    m = TRAINING.get("int")(ramp_start=0.0, ramp_end=0.4, steps=2)
    assert [m.eps_at(s, 10) for s in (0, 2, 4, 9)] == pytest.approx([0, EPS / 2, EPS, EPS])
    b = batch()
    net = model()
    # step 0: eps 0, x' = x, D~ = 0, loss = CE(x) (cat([x, x]) has x's BN statistics)
    loss0 = m.batch_loss(net, b, ctx(epoch=0)).loss
    assert loss0.item() == pytest.approx(F.cross_entropy(net(b.x), b.y).item(), abs=1e-5)
    for name in ("int", "int_adv", "int2", "int2_adv", "int_one_class"):
        meth = TRAINING.get(name)(steps=2, ramp_end=0.0)
        out = meth.adversarial(net, b, ctx(epoch=1))
        assert (out - b.x).abs().max() <= EPS + 1e-6
        loss = meth.batch_loss(net, b, ctx(epoch=1)).loss
        assert torch.isfinite(loss)
    # Int's inner PGD increases D~ over the start
    meth = TRAINING.get("int")(steps=5, ramp_end=0.0)
    net.eval()
    with torch.no_grad():
        _, cams = logits_and_cams(net, b.x)
        xa = meth.adversarial(net, b, ctx(epoch=1))
        la, ca = logits_and_cams(net, xa)
        d_pgd = discrepancy(cams, ca, la, b.y).mean()
        xr = (b.x + EPS * (2 * torch.rand_like(b.x) - 1)).clamp(0, 1)
        lr_, cr = logits_and_cams(net, xr)
        d_rand = discrepancy(cams, cr, lr_, b.y).mean()
    assert d_pgd > d_rand


def test_fat_stops_after_tau():
    net = model().eval()
    x = torch.rand(16, 3, 16, 16)
    y = net(x).argmax(1)  # all correctly classified at the start
    y[:4] = (y[:4] + 1) % 10  # these are wrong already: tau = 0 stops them at once
    x_adv, taken = early_stopped_pgd(net, x, y, eps=EPS, step_size=2 / 255, steps=5,
                                     tau=0, omega=0.0, random_start=False)
    assert (taken[:4] == 0).all()
    assert torch.equal(x_adv[:4], x[:4])
    _, taken1 = early_stopped_pgd(net, x, y, eps=EPS, step_size=2 / 255, steps=5,
                                  tau=1, omega=0.0, random_start=False)
    assert (taken1[:4] == 1).all()  # one more step after the first misclassification
    assert (taken <= 5).all() and (taken1 >= taken).all()


def test_part_budget_per_pixel():
    net = model("resnet10").train()
    b = batch(size=16)
    m = TRAINING.get("part")(steps=3, eps_low=2 / 255, top_fraction=0.25)
    imp = important_pixels(net, b.x, 0.25)
    assert net.training  # mode restored
    assert imp.shape == (4, 1, 16, 16)
    assert imp.float().mean().item() == pytest.approx(0.25, abs=0.05)
    out = m.adversarial(net, b, ctx(epoch=1))
    d = (out - b.x).abs()
    assert d[(~imp).expand_as(d)].max() <= 2 / 255 + 1e-6
    assert d[imp.expand_as(d)].max() <= EPS + 1e-6
    assert d[imp.expand_as(d)].max() > 2 / 255 + 1e-4
    # the map belongs to the image, not to its batch position (the PART bug): permuting
    # the batch permutes the maps
    perm = torch.tensor([2, 0, 3, 1])
    net.eval()
    assert torch.equal(important_pixels(net, b.x[perm], 0.25), important_pixels(net, b.x, 0.25)[perm])


@pytest.mark.parametrize("name", ["sip_at", "int", "int_adv", "int2", "int2_adv",
                                  "int_one_class", "fat", "part"])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 50), eps=st.integers(1, 12))
def test_budgets(name, seed, eps):
    cls = TRAINING.get(name)
    kw = {"eps": eps / 255, "steps": 2, "step_size": eps / 255}
    if name == "part":
        kw["eps_low"] = eps / 510
    if name.startswith("int"):
        kw["ramp_end"] = 0.0  # full eps at every step
    b = batch(seed=seed)
    out = cls(**kw).adversarial(model(), b, ctx(epoch=3, seed=seed))
    assert (out - b.x).abs().max() <= eps / 255 + 1e-6
    assert out.min() >= 0 and out.max() <= 1

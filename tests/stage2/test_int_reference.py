"""The Int family against transcriptions: the public code's eps schedule per optimiser
step, the one-pass ``cat([x, x'])`` forward under BatchNorm, the inner PGD, and the
losses of paper 004 (Eq. 7-10) computed here independently of ``interpretation.py``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, StepContext
from pipeline.train.interpretation import (
    discrepancy,
    logits_and_cams,
    paired_logits_and_cams,
)

EPS = 8 / 255
INT_NAMES = ("int", "int_adv", "int2", "int2_adv", "int_one_class")
# the public CIFAR run: 45,000 training images (5,000 held out), batch 128, last partial
# batch dropped, 200 epochs
PUBLIC_STEPS_PER_EPOCH, PUBLIC_EPOCHS = 45000 // 128, 200


def public_cifar_eps(step: int, eps: float = EPS) -> float:
    """Transcription of the CIFAR ``eps_val`` of AkhilanB/Proper-Interpretability."""
    if step <= 5000:
        return 0.0
    if step <= 70000:
        return eps * (step - 5000) / 65000
    return eps


def ctx(step=0, epochs=1, steps_per_epoch=1, seed=0, bn_mode="eval"):
    return StepContext(epoch=step // steps_per_epoch, epochs=epochs, step=step,
                       device=torch.device("cpu"), num_classes=10,
                       steps_per_epoch=steps_per_epoch, bn_mode=bn_mode,
                       generator=torch.Generator().manual_seed(seed))


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten fixed class prototypes plus noise: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    proto = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(123))
    return (0.6 * proto[y] + 0.4 * torch.rand(n, 3, 16, 16, generator=g)).clamp(0, 1), y


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """small_cnn (BatchNorm) trained to ~100 % on ``toy_data``; a fresh copy per use."""
    torch.manual_seed(0)
    net = build_model("small_cnn", 10, width=8).train()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for it in range(60):
        x, y = toy_data(64, it)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def ref_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and all-class CAMs through ``features`` and ``fc`` (GAP architecture)."""
    feats = model.features(x)
    logits = model.fc(feats.mean(dim=(2, 3)))
    return logits, torch.einsum("kc,nchw->nkhw", model.fc.weight, feats)


def ref_discrepancy(cams, cams_adv, logits_adv, y, one_class=False) -> torch.Tensor:
    """Eq. 7 example by example: 1/2 l1 of the true class + 1/2 the non-true classes' l1
    weighted by the softmax of the adversarial logits over the non-true classes."""
    out = []
    for n in range(len(y)):
        yn = int(y[n])
        l1 = [(cams[n, i] - cams_adv[n, i]).abs().sum() for i in range(cams.shape[1])]
        if one_class:
            out.append(l1[yn])
            continue
        others = [i for i in range(cams.shape[1]) if i != yn]
        w = torch.softmax(logits_adv[n, others], dim=0)
        out.append(0.5 * l1[yn] + 0.5 * sum(w[j] * l1[i] for j, i in enumerate(others)))
    return torch.stack(out)


# --- 1. the eps ramp per optimiser step --------------------------------------------


@pytest.mark.parametrize("name", INT_NAMES)
def test_default_ramp_is_the_public_cifar_schedule(name):
    m = TRAINING.get(name)()
    total = PUBLIC_EPOCHS * PUBLIC_STEPS_PER_EPOCH
    assert total == 70200
    for step in (0, 1, 2500, 4999, 5000, 5001, 6000, 20000, 37500, 50000, 69999, 70000,
                 70001, 70199):
        assert m.eps_at(step, total) == pytest.approx(public_cifar_eps(step), abs=1e-12)


def test_adversarial_reads_the_step_from_the_context():
    m = TRAINING.get("int")(steps=1)
    b = Batch(x=torch.rand(2, 3, 16, 16), y=torch.tensor([1, 2]), index=torch.arange(2))
    net = build_model("small_cnn", 10, width=8).train()
    run = {"epochs": PUBLIC_EPOCHS, "steps_per_epoch": PUBLIC_STEPS_PER_EPOCH}
    assert torch.equal(m.adversarial(net, b, ctx(step=5000, **run)), b.x)  # eps still 0
    out = m.adversarial(net, b, ctx(step=6000, **run))
    assert 0 < (out - b.x).abs().max() <= public_cifar_eps(6000) + 1e-6


def test_short_run_ramp():
    # 4 epochs of 79 steps: the same fractions of the run
    m = TRAINING.get("int")()
    frac = [m.eps_at(e * 79, 4 * 79) / EPS for e in range(4)]
    assert frac == pytest.approx([0.0, 12550 / 65000, 30100 / 65000, 47650 / 65000])
    assert m.eps_at(315, 316) / EPS == pytest.approx((315 / 316 * 70200 - 5000) / 65000)


def test_ramp_fields():
    assert TRAINING.get("int")(ramp_end=0.0).eps_at(0, 100) == pytest.approx(EPS)
    step = TRAINING.get("int")(ramp_start=0.5, ramp_end=0.5)  # a switch at half the run
    assert [step.eps_at(s, 10) for s in (4, 5, 6)] == pytest.approx([0, 0, EPS])
    for bad in ({"ramp_start": 0.6, "ramp_end": 0.5}, {"ramp_start": -0.1},
                {"ramp_end": 1.5}):
        with pytest.raises(ValueError, match="ramp_start"):
            TRAINING.get("int")(**bad)


# --- 2. one forward of cat([x, x']) ---------------------------------------------------


class TinyCam(nn.Module):
    """conv -> BatchNorm -> ReLU (the CAM layer) -> GAP -> linear: one BN layer, so the
    train-mode output has a closed form in the batch's statistics."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        with torch.no_grad():
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.5, 0.5)
        self.cam_layer = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.cam_layer(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_paired_forward_eval_mode_equals_two_passes():
    net = build_model("small_cnn", 10, width=8).eval()
    x, xa = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    lx, cx, la, ca = paired_logits_and_cams(net, x, xa)
    for got, want in zip((lx, cx, la, ca), (*logits_and_cams(net, x), *logits_and_cams(net, xa))):
        assert torch.allclose(got, want, atol=1e-5)


def test_paired_forward_train_mode_shares_batch_statistics():
    net = TinyCam().train()
    x, xa = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8) * 0.5  # different statistics
    lx, cx, la, ca = paired_logits_and_cams(net, x, xa)
    # by hand: normalise with the mean and (biased) variance of the 2B batch
    h = net.conv(torch.cat([x, xa]))
    mu, var = h.mean(dim=(0, 2, 3), keepdim=True), h.var(dim=(0, 2, 3), unbiased=False,
                                                         keepdim=True)
    w, b = net.bn.weight.view(1, -1, 1, 1), net.bn.bias.view(1, -1, 1, 1)
    a = torch.relu((h - mu) / torch.sqrt(var + net.bn.eps) * w + b)
    cams = torch.einsum("kc,nchw->nkhw", net.fc.weight, a)
    logits = net.fc(a.mean(dim=(2, 3)))
    assert torch.allclose(torch.cat([lx, la]), logits, atol=1e-5)
    assert torch.allclose(torch.cat([cx, ca]), cams, atol=1e-5)
    # ... which two separate train-mode passes do not give
    assert not torch.allclose(cx, logits_and_cams(net, x)[1], atol=1e-3)
    assert not torch.allclose(ca, logits_and_cams(net, xa)[1], atol=1e-3)


def ref_int_pgd(model, x, y, eps, step_size, steps, seed, paired):
    """The inner PGD of ``int`` (ascent on the summed D~, last iterate), transcribed."""
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed))
    delta = (x + ((2 * u - 1) * eps).clamp(-eps, eps)).clamp(0, 1) - x
    with torch.no_grad():
        cams = ref_forward(model, x)[1]
    for _ in range(steps):
        xa = (x + delta).requires_grad_(True)
        if paired:
            logits, cams_all = ref_forward(model, torch.cat([x, xa]))
            cams, logits_adv, cams_adv = cams_all[:len(x)], logits[len(x):], cams_all[len(x):]
        else:
            logits_adv, cams_adv = ref_forward(model, xa)
        (grad,) = torch.autograd.grad(discrepancy(cams, cams_adv, logits_adv, y).sum(), xa)
        delta = delta + step_size * grad.sign()
        delta = (x + delta.clamp(-eps, eps)).clamp(0, 1) - x
    return (x + delta).clamp(0, 1)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_inner_pgd_matches_reference(trained, bn_mode):
    x, y = toy_data(8, 7)
    b = Batch(x=x, y=y, index=torch.arange(8))
    m = TRAINING.get("int")(steps=3, ramp_end=0.0)
    net = copy.deepcopy(trained)
    ours = m.adversarial(net, b, ctx(seed=5, bn_mode=bn_mode))
    assert net.training  # mode restored
    ref_net = copy.deepcopy(trained).train(bn_mode == "train")
    ref = ref_int_pgd(ref_net, x, y, EPS, 2 / 255, 3, 5, paired=bn_mode == "train")
    assert torch.allclose(ours, ref, atol=1e-6)
    if bn_mode == "train":  # the paired pass matters: separate passes give another x'
        other = ref_int_pgd(copy.deepcopy(trained).train(), x, y, EPS, 2 / 255, 3, 5,
                            paired=False)
        assert not torch.allclose(ours, other, atol=1e-6)


# --- 3. what each variant ascends and what it minimises -----------------------------


def test_int2_example_has_higher_ce_than_int(trained):
    net = copy.deepcopy(trained).eval()
    for seed in range(3):
        x, y = toy_data(32, 1000 + seed)
        b = Batch(x=x, y=y, index=torch.arange(32))
        ce = {}
        for name in ("int", "int2"):
            xa = TRAINING.get(name)(steps=5, ramp_end=0.0).adversarial(net, b, ctx(seed=seed))
            with torch.no_grad():
                ce[name] = F.cross_entropy(ref_forward(net, xa)[0], y).item()
        # Int2's PGD ascends CE, Int's ascends D~ only (a margin of 2x; ~3-5x observed).
        # (Not asserted: Int's x' having the larger D~. On this model the CE example's D~
        # is ~20 % larger at 5-20 steps: near x the signs of the CAM differences come
        # from the random start, and sign ascent on |.| follows them.)
        assert ce["int2"] > 2 * ce["int"], (seed, ce)


@pytest.mark.parametrize("name", INT_NAMES)
@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_loss_is_ce_plus_gamma_discrepancy(trained, name, bn_mode):
    gamma = 0.5  # large, so that a wrong D~ term shows
    m = TRAINING.get(name)(steps=2, gamma=gamma, ramp_end=0.0)
    x, y = toy_data(6, 11)
    b = Batch(x=x, y=y, index=torch.arange(6))
    x_adv = m.adversarial(copy.deepcopy(trained).train(), b, ctx(seed=4, bn_mode=bn_mode))
    loss = m.batch_loss(copy.deepcopy(trained).train(), b, ctx(seed=4, bn_mode=bn_mode))
    # reference: one train-mode pass of cat([x, x']), CE and D~ written out here
    logits, cams = ref_forward(copy.deepcopy(trained).train(), torch.cat([x, x_adv]))
    n = len(x)
    ce_x = F.cross_entropy(logits[:n], y)
    ce_adv = F.cross_entropy(logits[n:], y)
    d = ref_discrepancy(cams[:n], cams[n:], logits[n:], y, one_class=name == "int_one_class")
    want = (ce_adv if name.endswith("_adv") else ce_x) + gamma * d.mean()
    assert loss.loss.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    assert torch.allclose(loss.logits, logits[n:], atol=1e-6)
    # the test tells the variants apart: both terms are visible
    assert gamma * d.mean() > 1e-3 and abs(ce_adv - ce_x) > 1e-3

"""FAT against transcriptions of its public code (zjfheart/Friendly-Adversarial-
Training): ``adjust_tau`` of ``FAT.py`` and ``earlystop`` of ``earlystop.py``, both
sides drawing their noise from one seeded generator."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pipeline.models import build_model
from pipeline.train import TRAINING, Batch, StepContext
from pipeline.train.fat import early_stopped_pgd

EPS, STEP = 2 / 255, 0.5 / 255  # small: some examples of the untrained net never flip


def adjust_tau(epoch, dynamictau, tau=0):
    """``FAT.py``'s ``adjust_tau`` (called with the 1-based epoch, ``epoch + 1``)."""
    if dynamictau:
        if epoch <= 50:
            tau = 0
        elif epoch <= 90:
            tau = 1
        else:
            tau = 2
    return tau


def reference_earlystop(model, data, target, step_size, epsilon, perturb_steps, tau,
                        omega, gen):
    """``earlystop`` with ``randominit_type="uniform_randominit"``, ``loss_fn="cent"``,
    ``rand_init=True``, on CPU. Changed only so both sides draw the same numbers: the
    uniform start is ``(2 u - 1) eps`` from ``gen`` (the code: ``np.random.uniform``),
    each step's N(0, 1) is drawn from ``gen`` for the whole batch and indexed by the
    examples still iterating (the code draws it for those alone), and the outputs come
    back in batch order (the code returns them in stopping order with their targets)."""
    model.eval()
    K = perturb_steps
    count = 0
    control = torch.ones(len(target)) * tau
    u = torch.rand(data.shape, generator=gen)
    iter_adv = torch.clamp(data.detach() + (2 * u - 1) * epsilon, 0.0, 1.0)
    iter_clean_data, iter_target = data.detach(), target.detach()
    iter_pos = torch.arange(len(target))  # batch positions of the examples iterating
    out_adv, out_pos = [], []
    while K > 0:
        iter_adv.requires_grad_()
        output = model(iter_adv)
        pred = output.max(1, keepdim=True)[1]
        output_index, iter_index = [], []
        for idx in range(len(pred)):
            if pred[idx] != iter_target[idx]:
                if control[idx] == 0:
                    output_index.append(idx)
                else:
                    control[idx] -= 1
                    iter_index.append(idx)
            else:
                iter_index.append(idx)
        if output_index:
            out_adv.append(iter_adv[output_index].detach())
            out_pos.append(iter_pos[output_index])
        model.zero_grad()
        loss_adv = nn.CrossEntropyLoss(reduction="mean")(output, iter_target)
        loss_adv.backward()
        grad = iter_adv.grad
        if len(iter_index) == 0:
            break
        noise = torch.randn(data.shape, generator=gen)[iter_pos[iter_index]]
        control, iter_adv = control[iter_index], iter_adv[iter_index]
        iter_clean_data = iter_clean_data[iter_index]
        iter_target = iter_target[iter_index]
        iter_pos, grad = iter_pos[iter_index], grad[iter_index]
        eta = step_size * grad.sign()
        iter_adv = iter_adv.detach() + eta + omega * noise
        iter_adv = torch.min(torch.max(iter_adv, iter_clean_data - epsilon),
                             iter_clean_data + epsilon)
        iter_adv = torch.clamp(iter_adv, 0, 1)
        count += len(iter_target)
        K = K - 1
    else:
        out_adv.append(iter_adv.detach())
        out_pos.append(iter_pos)
    adv = torch.empty_like(data)
    adv[torch.cat(out_pos)] = torch.cat(out_adv)
    return adv, count


def tiny():
    torch.manual_seed(0)
    return build_model("small_cnn", 10, width=8).eval()


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=g)
    return x, g


def ctx(epoch, epochs, seed):
    return StepContext(epoch=epoch, epochs=epochs, step=0, device=torch.device("cpu"),
                       num_classes=10, generator=torch.Generator().manual_seed(seed))


def test_tau_schedule_at_120_epochs_is_adjust_tau():
    fat = TRAINING.get("fat")()
    assert fat.tau is None
    got = [fat.tau_at(ctx(e, 120, 0)) for e in range(120)]
    assert got == [adjust_tau(e + 1, True) for e in range(120)]
    assert got.count(0) == 50 and got.count(1) == 40 and got.count(2) == 30


@pytest.mark.parametrize("epochs,want", [
    (1, [2]),
    (4, [0, 1, 1, 2]),
    (15, [0] * 6 + [1] * 5 + [2] * 4),
    (240, [0] * 100 + [1] * 80 + [2] * 60),
])
def test_tau_schedule_scales_to_the_run(epochs, want):
    fat = TRAINING.get("fat")()
    assert [fat.tau_at(ctx(e, epochs, 0)) for e in range(epochs)] == want
    fixed = TRAINING.get("fat")(tau=3)
    assert {fixed.tau_at(ctx(e, epochs, 0)) for e in range(epochs)} == {3}


@pytest.mark.parametrize("tau,omega", [(0, 0.001), (1, 0.001), (2, 0.02), (20, 0.001)])
def test_early_stop_matches_reference(tau, omega):
    model = tiny()
    x, g = data()
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:6] = torch.randint(0, 10, (6,), generator=g)  # some wrong at the start
    ours, taken = early_stopped_pgd(model, x, y, eps=EPS, step_size=STEP, steps=10,
                                    tau=tau, omega=omega,
                                    generator=torch.Generator().manual_seed(5))
    ref, count = reference_earlystop(model, x, y, STEP, EPS, 10, tau, omega,
                                     torch.Generator().manual_seed(5))
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    assert int(taken.sum()) == count
    if tau < 20:  # the rule is exercised: some examples stop early, some run all steps
        assert (taken < 10).any() and (taken == 10).any()
    else:
        assert (taken == 10).all()
    assert (ours - x).abs().max() <= EPS + 1e-6 and ours.min() >= 0 and ours.max() <= 1


def test_fat_attacks_at_the_scheduled_tau():
    """``FAT.adversarial`` at epoch e of 4 is ``earlystop`` at tau 0, 1, 1, 2, with its
    uniform start and omega = 0.001 noise drawn from ``ctx.generator``."""
    model = tiny()
    x, g = data(n=16, seed=1)
    with torch.no_grad():
        y = model(x).argmax(1)
    batch = Batch(x=x, y=y, index=torch.arange(len(x)))
    fat = TRAINING.get("fat")()
    for epoch, tau in enumerate([0, 1, 1, 2]):
        ours = fat.adversarial(model, batch, ctx(epoch, 4, seed=epoch))
        gen = torch.Generator().manual_seed(epoch)
        ref, _ = reference_earlystop(model, x, y, fat.step_size, fat.eps, fat.steps,
                                     tau, fat.omega, gen)
        assert torch.allclose(ours, ref, atol=1e-6, rtol=0), epoch
        other, _ = reference_earlystop(model, x, y, fat.step_size, fat.eps, fat.steps,
                                       (tau + 1) % 3, fat.omega,
                                       torch.Generator().manual_seed(epoch))
        assert not torch.allclose(ours, other, atol=1e-6, rtol=0)  # tau matters here

"""Interpretability-aware robust training, Int and Int2 (paper 004, Eq. 7-10).

Loss ``f(x') + gamma * D~worst(x, x')`` with ``D~`` the label-free l1 2-class CAM
discrepancy (:func:`pipeline.train.interpretation.discrepancy`), gamma = 0.01:

- ``int``: x' maximises the training objective, whose CE is on clean x, so PGD runs on
  ``D~`` alone (Eq. 9); loss ``CE(x) + gamma D~``.
- ``int_adv``: PGD on ``CE(x') + gamma D~``; loss ``CE(x') + gamma D~``.
- ``int2``: x' the CE-PGD example (Eq. 10); loss ``CE(x) + gamma D~``.
- ``int2_adv``: x' the CE-PGD example; loss ``CE(x') + gamma D~``.
- ``int_one_class``: ``int`` with the true-class term only.

**BatchNorm.** The training loss takes the logits and CAMs of x and x' from ONE forward
pass of ``cat([x, x'])`` (:func:`~pipeline.train.interpretation.paired_logits_and_cams`),
so under train-mode BatchNorm both CAMs are normalised with the same batch statistics
(those of the 2B batch) and D~ compares interpretations, not two sets of statistics.
The inner PGD does the same when it crafts with train-mode BN (``ctx.bn_mode ==
"train"``) and its objective contains D~ (``int``, ``int_adv``, ``int_one_class``);
under eval-mode BN one pass of x' per step suffices (the clean CAMs, computed once, are
the same either way). Int2's CE-PGD forwards x' alone, as ``pgd_at`` does. The public
code's networks have no BatchNorm, so this is salpipe's choice, not a transcription.

**eps ramp, per optimiser step**, as the public code (``AkhilanB/Proper-Interpretability``,
``train.py``, the CIFAR ``eps_val``): eps is 0 up to step 5,000, then
``eps * (step - 5000) / 65000`` up to step 70,000, then eps. Its CIFAR run has
``int(45000 / 128) = 351`` steps per epoch (5,000 of the 50,000 training images are
held out for validation, the last partial batch is dropped) for 200 epochs, 70,200
steps; salpipe keeps the shape as fractions of the run's ``epochs * steps_per_epoch``
steps: ``ramp_start = 5000 / 70200`` (~0.0712) and ``ramp_end = 70000 / 70200``
(~0.9972). The paper itself gives no ramp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field
from pipeline.core.modes import module_mode
from pipeline.train import TRAINING
from pipeline.train.interpretation import (
    discrepancy,
    logits_and_cams,
    paired_logits_and_cams,
)
from pipeline.train.method import BN_MODES, Batch, Loss, StepContext, TrainingMethod


@dataclass(frozen=True)
class IntBase(TrainingMethod):
    """Shared fields and the inner PGD of the Int family.

    Args:
        gamma: weight of D~worst (0.01). eps, steps, step_size: the inner PGD (8/255,
            10 steps of 2/255, uniform random start, last iterate).
        ramp_start, ramp_end: fractions of the run's optimiser steps; eps is 0 up to
            ``ramp_start``, grows linearly to eps at ``ramp_end`` and stays there
            (defaults 5000/70200 and 70000/70200, the public CIFAR schedule; see the
            module docstring). ``0 <= ramp_start <= ramp_end <= 1``, except that
            ``ramp_end = 0`` means no ramp: full eps from the first step, whatever
            ``ramp_start``; ``ramp_start = ramp_end > 0`` switches from 0 to eps there.
    """

    gamma: float = 0.01
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    ramp_start: float = 5000 / 70200  # public code: eps 0 for 5k of 70,200 CIFAR steps
    ramp_end: float = 70000 / 70200  # public code: full eps from step 70k

    start = "uniform"  # U[-eps, eps] in the ball, as the public code
    # set by the registered subclasses
    attack_on = "d"  # "d": D~ only; "ce_d": CE(x') + gamma D~; "ce": CE(x')
    adv_ce = False  # CE at x' (else at x)
    one_class = False

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"Int needs steps >= 1, not {self.steps}")
        if self.ramp_end != 0 and not 0 <= self.ramp_start <= self.ramp_end <= 1:
            raise ValueError(f"Int needs 0 <= ramp_start <= ramp_end <= 1 (or ramp_end = 0, "
                             f"no ramp), not ramp_start={self.ramp_start}, "
                             f"ramp_end={self.ramp_end}")

    def eps_at(self, step: int, total_steps: int) -> float:
        """The ramped radius at 0-based optimiser ``step`` of a ``total_steps`` run."""
        if self.ramp_end == 0:
            return float(self.eps)
        t = step / max(total_steps, 1)
        if t <= self.ramp_start:  # "<=" as the public code's ``step <= 5000``
            return 0.0
        if t >= self.ramp_end:
            return float(self.eps)
        return float(self.eps) * (t - self.ramp_start) / (self.ramp_end - self.ramp_start)

    def inner(self, logits_adv, cams, cams_adv, y) -> torch.Tensor:
        """The summed objective the inner PGD ascends."""
        loss = torch.zeros((), device=y.device)
        if self.attack_on in ("ce", "ce_d"):
            loss = loss + F.cross_entropy(logits_adv, y, reduction="sum")
        if self.attack_on in ("d", "ce_d"):
            d = discrepancy(cams, cams_adv, logits_adv, y, self.one_class)
            loss = loss + (self.gamma if self.attack_on == "ce_d" else 1.0) * d.sum()
        return loss

    def adversarial(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """x' within ``eps_at(step)`` of x and in [0, 1]; BN in ``ctx.bn_mode`` (with
        train-mode BN and D~ in the objective, x and x' share one forward per step)."""
        if ctx.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, not {ctx.bn_mode!r}")
        eps = self.eps_at(ctx.step, ctx.epochs * ctx.steps_per_epoch)
        x, y = batch.x.detach(), batch.y
        if eps == 0:
            return x
        ball, cams = LinfBall(eps), None
        paired = ctx.bn_mode == "train" and self.attack_on != "ce"
        with module_mode(model, ctx.bn_mode == "train"), torch.enable_grad():
            if self.attack_on != "ce" and not paired:
                with torch.no_grad():  # eval-mode BN: the clean CAMs do not change
                    _, cams = logits_and_cams(model, x)
            g = ctx.generator
            u = torch.rand(x.shape, generator=g,
                           device=g.device if g is not None else x.device)
            delta = ball.random_start(x, u=u)
            for _ in range(self.steps):
                xa = (x + delta).requires_grad_(True)
                if self.attack_on == "ce":
                    logits_adv, cams_adv = model(xa), None
                elif paired:
                    _, cams, logits_adv, cams_adv = paired_logits_and_cams(model, x, xa)
                else:
                    logits_adv, cams_adv = logits_and_cams(model, xa)
                loss = self.inner(logits_adv, cams, cams_adv, y)
                (grad,) = torch.autograd.grad(loss, xa)
                delta = ball.project(x, ball.step(delta, grad, self.step_size))
        return (x + delta).clamp(0, 1).detach()

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        """``CE + gamma * mean D~`` from one forward of ``cat([x, x'])`` (train mode)."""
        x_adv = self.adversarial(model, batch, ctx)
        logits, cams, logits_adv, cams_adv = paired_logits_and_cams(model, batch.x, x_adv)
        ce = F.cross_entropy(logits_adv if self.adv_ce else logits, batch.y)
        d = discrepancy(cams, cams_adv, logits_adv, batch.y, self.one_class)
        return Loss(ce + self.gamma * d.mean(), logits_adv)


def _register(name: str, attack_on: str, adv_ce: bool, one_class: bool, doc: str):
    cls = type(name.title().replace("_", ""), (IntBase,), {
        "attack_on": attack_on, "adv_ce": adv_ce, "one_class": one_class,
        "__doc__": doc + "\n\n    Fields as :class:`IntBase`.", "__module__": __name__})
    cls = TRAINING.register(name)(dataclass(frozen=True)(cls))
    globals()[cls.__name__] = cls
    return cls


_register("int", "d", False, False, "Int: ``CE(x) + gamma D~(x, x')``, x' = PGD on D~ (Eq. 9).")
_register("int_adv", "ce_d", True, False,
          "Int-Adv: ``CE(x') + gamma D~``, x' = PGD on ``CE(x') + gamma D~``.")
_register("int2", "ce", False, False,
          "Int2: ``CE(x) + gamma D~(x, x')``, x' = CE-PGD example (Eq. 10).")
_register("int2_adv", "ce", True, False, "Int2-Adv: ``CE(x') + gamma D~``, x' = CE-PGD.")
_register("int_one_class", "d", False, True,
          "Int, one class: ``CE(x) + gamma ||I(x,y) - I(x',y)||_1``, x' = PGD on it.")

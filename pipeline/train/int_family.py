"""Interpretability-aware robust training, Int and Int2 (paper 004, Eq. 7-10).

Loss ``f(x') + gamma * D~worst(x, x')`` with ``D~`` the label-free l1 2-class CAM
discrepancy (:func:`pipeline.train.interpretation.discrepancy`), gamma = 0.01:

- ``int``: x' maximises the training objective, whose CE is on clean x, so PGD runs on
  ``D~`` alone (Eq. 9); loss ``CE(x) + gamma D~``.
- ``int_adv``: PGD on ``CE(x') + gamma D~``; loss ``CE(x') + gamma D~``.
- ``int2``: x' the CE-PGD example (Eq. 10); loss ``CE(x) + gamma D~``.
- ``int2_adv``: x' the CE-PGD example; loss ``CE(x') + gamma D~``.
- ``int_one_class``: ``int`` with the true-class term only.

As the public code (``AkhilanB/Proper-Interpretability``), eps is ramped linearly from 0:
``eps * min(1, epoch / warmup_epochs)`` (the code: 0 for 5k steps, then linear to 70k).
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
from pipeline.train.interpretation import discrepancy, logits_and_cams
from pipeline.train.method import BN_MODES, Batch, Loss, StepContext, TrainingMethod


@dataclass(frozen=True)
class IntBase(TrainingMethod):
    """Shared fields and the inner PGD of the Int family.

    Args:
        gamma: weight of D~worst (0.01). eps, steps, step_size: the inner PGD (8/255,
            10 steps of 2/255, uniform random start, last iterate).
        warmup_epochs: epochs over which eps grows linearly from 0 (0: no ramp).
    """

    gamma: float = 0.01
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    warmup_epochs: int = 5

    # set by the registered subclasses
    attack_on = "d"  # "d": D~ only; "ce_d": CE(x') + gamma D~; "ce": CE(x')
    adv_ce = False  # CE at x' (else at x)
    one_class = False

    def __post_init__(self):
        if self.steps < 1 or self.warmup_epochs < 0:
            raise ValueError("Int needs steps >= 1 and warmup_epochs >= 0")

    def eps_at(self, epoch: int) -> float:
        """The ramped radius at 0-based ``epoch``."""
        if self.warmup_epochs == 0:
            return float(self.eps)
        return float(self.eps) * min(1.0, epoch / self.warmup_epochs)

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
        """x' within ``eps_at(epoch)`` of x and in [0, 1]; BN in ``ctx.bn_mode``."""
        eps = self.eps_at(ctx.epoch)
        x, y = batch.x.detach(), batch.y
        if eps == 0:
            return x
        if ctx.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, not {ctx.bn_mode!r}")
        ball = LinfBall(eps)
        with module_mode(model, ctx.bn_mode == "train"), torch.enable_grad():
            with torch.no_grad():
                _, cams = logits_and_cams(model, x)
            g = ctx.generator
            u = torch.rand(x.shape, generator=g,
                           device=g.device if g is not None else x.device)
            delta = ball.random_start(x, u=u)
            for _ in range(self.steps):
                xa = (x + delta).requires_grad_(True)
                logits_adv, cams_adv = logits_and_cams(model, xa)
                loss = self.inner(logits_adv, cams, cams_adv, y)
                (grad,) = torch.autograd.grad(loss, xa)
                delta = ball.project(x, ball.step(delta, grad, self.step_size))
        return (x + delta).clamp(0, 1).detach()

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        x_adv = self.adversarial(model, batch, ctx)
        logits, cams = logits_and_cams(model, batch.x)
        logits_adv, cams_adv = logits_and_cams(model, x_adv)  # the last forward pass
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

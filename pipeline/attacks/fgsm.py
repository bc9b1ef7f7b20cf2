"""Fast gradient sign method (Goodfellow et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import LOSSES, Attack, BestIterate
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


@ATTACKS.register("fgsm")
@dataclass(frozen=True)
class FGSM(Attack):
    """One signed-gradient step of size ``eps``: ``x + eps * sign(grad loss)``.

    Args:
        eps: l-inf budget.
        loss: ``ce`` or ``cw``.
        bn_mode: BatchNorm mode while attacking.

    Per example the better of x and the step (misclassified first, else higher loss)
    is returned, as for every evaluation attack.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    loss: str = "ce"
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"fgsm loss must be one of {sorted(LOSSES)}, not {self.loss!r}")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ball = LinfBall(self.eps)
        x0 = x.clone().requires_grad_(True)
        logits = model(x0)
        loss = LOSSES[self.loss](logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), x0)
        best = BestIterate(x)
        best.update(x, logits, y, loss)
        x_adv = x + ball.project(x, ball.step(torch.zeros_like(x), grad, self.eps))
        with torch.no_grad():
            logits = model(x_adv)
            best.update(x_adv, logits, y, LOSSES[self.loss](logits, y))
        return best.x

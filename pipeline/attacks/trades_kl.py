"""The TRADES inner maximisation (Zhang et al. 2019) used as an evaluation attack."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack, BestIterate
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


def kl_to_clean(logits_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-example ``KL(p_clean || softmax(logits_adv))`` (TRADES' divergence)."""
    log_q = F.log_softmax(logits_adv, dim=1)
    return F.kl_div(log_q, p_clean, reduction="none").sum(1)


@ATTACKS.register("trades_kl")
@dataclass(frozen=True)
class TradesKL(Attack):
    """PGD on the KL divergence between clean and perturbed predictions.

    Starts at ``x + 0.001 * N(0, 1)`` as TRADES does (drawn from U[-0.001, 0.001]
    per-example streams here, so results do not depend on the batch).

    Args:
        eps: l-inf budget.
        steps: PGD steps (TRADES trains with 10).
        step_size: ``None`` -> ``eps / 4`` (TRADES: 0.007 at 8/255).
        bn_mode: BatchNorm mode.

    Per example the best iterate is kept: misclassified first, else largest KL.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float | None = budget_field(None)
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError("trades_kl needs steps >= 1")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        alpha = self.eps / 4 if self.step_size is None else self.step_size
        ball = LinfBall(self.eps)
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        delta = ball.project(x, 0.001 * (2 * self.uniform(x) - 1))
        best = BestIterate(x)
        for t in range(self.steps + 1):
            x_adv = (x + delta).requires_grad_(True)
            logits = model(x_adv)
            loss = kl_to_clean(logits, p_clean)
            best.update(x_adv, logits, y, loss)
            if t == self.steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            delta = ball.project(x, ball.step(delta, grad, alpha))
        return best.x.clamp(0, 1)

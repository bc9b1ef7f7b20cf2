"""Projected gradient descent under l-inf (Madry et al. 2018), with restarts and best-iterate
tracking per example."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import LOSSES, Attack, BestIterate
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


@ATTACKS.register("pgd")
@dataclass(frozen=True)
class PGD(Attack):
    """l-inf PGD: ``steps`` signed-gradient steps of ``step_size``, projected after each.

    Args:
        eps: radius of the l-inf ball (pixels in [0, 1]).
        steps: number of gradient steps (0 = the start point only).
        step_size: step length; ``None`` -> ``2.5 * eps / steps`` (Madry et al.).
        restarts: independent runs; per example the best iterate over all is kept.
        random_start: start from uniform noise in the ball, else from x.
        loss: ``ce`` (cross entropy) or ``cw`` (C&W margin).
        best: ``misclassified`` keeps, per example, a misclassified iterate when one was
            found and otherwise the highest-loss iterate (evaluation); ``loss`` keeps the
            highest-loss iterate; ``last`` returns the last iterate (cheapest; training).
            Every mode but ``last`` includes the start point.
        bn_mode: BatchNorm mode while attacking (``eval`` or ``train``).

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float | None = budget_field(None)
    restarts: int = 1
    random_start: bool = True
    loss: str = "ce"
    best: str = "misclassified"
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"pgd loss must be one of {sorted(LOSSES)}, not {self.loss!r}")
        if self.best not in ("misclassified", "loss", "last"):
            raise ValueError(f"pgd best must be misclassified, loss or last, not {self.best!r}")
        if self.steps < 0 or self.restarts < 1:
            raise ValueError("pgd needs steps >= 0 and restarts >= 1")

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return 2.5 * self.eps / max(self.steps, 1)

    def threat(self, x: torch.Tensor) -> LinfBall:
        """The threat set; subclasses (masked PGD) override it."""
        return LinfBall(self.eps)

    def loss_and_grad(
        self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, need_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(logits, per-example loss, d loss.sum() / d x_adv or None)`` at ``x_adv``.

        EOT-PGD overrides this to average over the model's randomness.
        """
        x_adv = x_adv.detach().requires_grad_(need_grad)
        logits = model(x_adv)
        loss = LOSSES[self.loss](logits, y)
        grad = torch.autograd.grad(loss.sum(), x_adv)[0] if need_grad else None
        return logits.detach(), loss.detach(), grad

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ball = self.threat(x)
        best = BestIterate(x, "loss" if self.best == "last" else self.best)
        x_last = x
        for _ in range(self.restarts):
            delta = (
                ball.random_start(x, u=self.uniform(x))
                if self.random_start else torch.zeros_like(x)
            )
            for t in range(self.steps + 1):
                last = t == self.steps
                if last and self.best == "last":
                    break
                logits, loss, grad = self.loss_and_grad(model, x + delta, y, not last)
                if self.best != "last":
                    best.update(x + delta, logits, y, loss)
                if last:
                    break
                delta = ball.project(x, ball.step(delta, grad, self.alpha))
            x_last = x + delta
        out = x_last if self.best == "last" else best.x
        return out.clamp(0, 1)

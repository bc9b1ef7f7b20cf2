"""Projected gradient descent under l-inf (Madry et al. 2018), with restarts and best-iterate
tracking per example."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import LOSSES, Attack
from pipeline.attacks.threat import LinfBall


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

    eps: float = 8 / 255
    steps: int = 10
    step_size: float | None = None
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

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss_fn = LOSSES[self.loss]
        ball = self.threat(x)
        best_x, best_loss = x.clone(), None
        best_fooled = torch.zeros_like(y, dtype=torch.bool)
        for _ in range(self.restarts):
            delta = ball.random_start(x) if self.random_start else torch.zeros_like(x)
            for t in range(self.steps + 1):
                last = t == self.steps
                if last and self.best == "last":
                    best_x = x + delta
                    break
                x_adv = (x + delta).requires_grad_(True)
                logits = model(x_adv)
                loss = loss_fn(logits, y)
                if self.best != "last":
                    fooled = (logits.argmax(1) != y) if self.best == "misclassified" else best_fooled
                    if best_loss is None:
                        better = torch.ones_like(y, dtype=torch.bool)
                    else:
                        better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
                    best_x = torch.where(better[:, None, None, None], x_adv.detach(), best_x)
                    best_loss = loss.detach() if best_loss is None else torch.where(better, loss.detach(), best_loss)
                    best_fooled = best_fooled | (fooled & better)
                if last:
                    break
                (grad,) = torch.autograd.grad(loss.sum(), x_adv)
                delta = ball.project(x, ball.step(delta, grad, self.alpha))
        return best_x.clamp(0, 1)

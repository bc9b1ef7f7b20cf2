"""Uniform noise in the l-inf ball: the random-perturbation baseline of paper 000."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack, BestIterate, ce_loss
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


@ATTACKS.register("uniform_noise")
@dataclass(frozen=True)
class UniformNoise(Attack):
    """``clip(x + U[-eps, eps])``; with ``samples > 1`` the worst draw per example.

    Args:
        eps: half-width of the noise (l-inf budget).
        samples: draws per example; a misclassified draw is kept when there is one.
        bn_mode: BatchNorm mode.

    Draws come from per-example streams when the call passes ``index``.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    samples: int = 1
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.samples < 1:
            raise ValueError("uniform_noise needs samples >= 1")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ball = LinfBall(self.eps)
        best = BestIterate(x)
        with torch.no_grad():
            for _ in range(self.samples):
                x_n = x + ball.random_start(x, u=self.uniform(x))
                logits = model(x_n)
                best.update(x_n, logits, y, ce_loss(logits, y))
        return best.x

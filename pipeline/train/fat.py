"""Friendly adversarial training, FAT (Zhang et al. 2020, "Attacks which do not kill
training make adversarial learning stronger"): PGD-AT whose inner PGD stops, per example,
``tau`` steps after the example is first misclassified (early-stopped PGD)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field
from pipeline.core.modes import module_mode
from pipeline.train import TRAINING
from pipeline.train.method import (
    BN_MODES,
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)


def early_stopped_pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float,
    steps: int, tau: int, omega: float = 0.001, bn_mode: str = "eval",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD that freezes each example once it has been misclassified ``tau + 1`` times.

    As the public code (``zjfheart/Friendly-Adversarial-Training``, ``earlystop``): start
    at ``x + omega * N(0, 1)``; before each step the examples that are misclassified with
    no budget left stop (keep their current iterate), misclassified ones with budget left
    spend one; the rest take a signed step, projected to the eps ball and [0, 1].

    Returns:
        ``(x_adv, steps_taken)``: ``[B, C, H, W]`` detached and long ``[B]``.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, not {bn_mode!r}")
    ball = LinfBall(eps)
    x = x.detach()
    gdev = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, device=gdev).to(x.device, x.dtype)
    delta = ball.project(x, omega * noise)
    budget = torch.full((x.shape[0],), int(tau), device=x.device)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    taken = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    with module_mode(model, bn_mode == "train"), torch.enable_grad():
        for _ in range(steps):
            xa = (x + delta).requires_grad_(True)
            logits = model(xa)
            wrong = logits.detach().argmax(1) != y
            active &= ~(wrong & (budget == 0))
            budget = torch.where(active & wrong, budget - 1, budget)
            if not bool(active.any()):
                break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xa)
            stepped = ball.project(x, ball.step(delta, grad, step_size))
            delta = torch.where(active[:, None, None, None], stepped, delta)
            taken += active.long()
    return (x + delta).clamp(0, 1).detach(), taken


@TRAINING.register("fat")
@dataclass(frozen=True)
class FAT(TrainingMethod):
    """``CE(model(x_adv), y)`` with x_adv from :func:`early_stopped_pgd`.

    Args:
        eps: l-inf radius (8/255). steps: maximum PGD steps (10). step_size: 2/255
            (the public code: 0.007). tau: extra steps after the first
            misclassification (0; the public code raises it to 1 and 2 late in
            training, which a run can do by resuming with another tau).
        omega: scale of the Gaussian random start (0.001).
    """

    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    tau: int = 0
    omega: float = 0.001

    def __post_init__(self):
        if self.steps < 1 or self.tau < 0:
            raise ValueError("fat needs steps >= 1 and tau >= 0")

    def adversarial(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        x_adv, _ = early_stopped_pgd(model, batch.x, batch.y, eps=self.eps,
                                     step_size=self.step_size, steps=self.steps,
                                     tau=self.tau, omega=self.omega, bn_mode=ctx.bn_mode,
                                     generator=ctx.generator)
        return x_adv

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.adversarial(model, batch, ctx), batch.y)

"""PGD-SAT (paper 000, Sec. 4): each batch perturbed by SAT with probability ``p``, else
by PGD; the model trains on CE at the perturbed batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    coin,
    cross_entropy_at,
)
from pipeline.train.pgd_at import PGDAT
from pipeline.train.sat import SATSchedule


def official_overshoot(x: torch.Tensor, step: torch.Tensor, eps: float,
                       generator: torch.Generator | None) -> torch.Tensor:
    """The public code's SAT branch (``attack.py``, ``AttackPGD.attack3``): the PGD random
    start ``U[-eps, eps]`` is added first and the saliency step on top, then only
    ``clamp(., 0, 1)``: ``clip(x + u + step)``, so ``|x' - x|`` reaches ``eps + eps0``.
    """
    gdev = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=gdev).to(x.device, x.dtype)
    return (x + (2 * u - 1) * eps + step).clamp(0, 1).detach()


@TRAINING.register("pgd_sat")
@dataclass(frozen=True)
class PGDSAT(SATSchedule, TrainingMethod):
    """``CE(model(x'), y)``, x' the SAT input with probability ``p`` else the PGD example.

    Args:
        p: probability that a batch takes the SAT branch (0.5; one coin per batch, as
            the public code).
        eps, steps, step_size, random_start: the PGD branch (8/255, 10, 2/255, True).
        eps0, alpha, transform: the SAT branch (see ``sat``).
        official: reproduce the public code, whose SAT branch adds the PGD random start
            before the saliency step, so a perturbation can reach ``eps + eps0`` (2 eps).
            Off by default: every perturbation then stays within ``eps`` (``eps0 <= eps``
            is required).

    With ``p = 0.5`` an epoch costs about ``(1 + (steps + 1)) / (2 (steps + 1))`` of
    PGD-AT's (0.55 with 10 steps).
    """

    needs_saliency = True
    saliency_kind = "map"
    p: float = 0.5
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    random_start: bool = True
    official: bool = False

    def __post_init__(self):
        self.check_mixture(self.p, self.eps)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def perturbed(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """The batch's training input (SAT or PGD branch)."""
        if coin(self.p, ctx.generator, batch.x.device):
            if self.official:
                step = self.sat_delta(batch, ctx)
                return official_overshoot(batch.x, step, self.eps, ctx.generator)
            return self.sat_input(batch, ctx)
        pgd = PGDAT(eps=self.eps, steps=self.steps, step_size=self.step_size,
                    random_start=self.random_start)
        return pgd.adversarial(model, batch, ctx)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.perturbed(model, batch, ctx), batch.y)

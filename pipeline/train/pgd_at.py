"""PGD adversarial training (Madry et al. 2018): minimise CE at the PGD example."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks.pgd import PGD
from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)


@TRAINING.register("pgd_at")
@dataclass(frozen=True)
class PGDAT(TrainingMethod):
    """``CE(model(x_adv), y)``, x_adv = l-inf PGD on CE (the last iterate, as Madry et al.).

    The inner attack is :class:`pipeline.attacks.PGD` with ``best="last"``; BatchNorm runs
    in ``ctx.bn_mode`` while it crafts the example (the loop's explicit, logged setting).

    Args:
        eps: l-inf radius (8/255). steps: PGD steps (10). step_size: 2/255.
        random_start: start from U[-eps, eps] (True, as Madry et al.).
    """

    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    random_start: bool = True

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def attack(self, ctx: StepContext):
        """The inner PGD (built per call: cheap, and never mutated)."""

        return PGD(
            eps=self.eps,
            steps=self.steps,
            step_size=self.step_size,
            random_start=self.random_start,
            best="last",
            bn_mode=ctx.bn_mode,
        )

    def adversarial(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """The PGD example of the batch (within eps of x and in [0, 1])."""
        return self.attack(ctx)(model, batch.x, batch.y)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.adversarial(model, batch, ctx), batch.y)

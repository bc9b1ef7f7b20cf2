"""TRADES-SAT (paper 000, Sec. 4): each batch's adversarial input is the SAT input with
probability ``p``, else the TRADES KL-maximising example; the loss is TRADES'."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import Batch, Loss, StepContext, TrainingMethod, coin
from pipeline.train.sat import SATSchedule
from pipeline.train.trades import TRADES


@TRAINING.register("trades_sat")
@dataclass(frozen=True)
class TRADESSAT(SATSchedule, TrainingMethod):
    """``CE(model(x), y) + beta * KL(model(x) || model(x'))``, x' SAT (probability ``p``)
    or the TRADES example.

    Args:
        p: probability of the SAT branch per batch (0.5).
        beta: KL weight; 1.0 as the public code hard-codes (``student_trades.py``).
        eps, steps, step_size: the TRADES inner maximisation (8/255, 10, 2/255).
        eps0, alpha, transform: the SAT branch (see ``sat``).

    Every perturbation stays within ``eps`` (``eps0 <= eps`` is required). Unlike its
    PGD-SAT, the public TRADES-SAT (``AttackTRADES.attack3``) takes the saliency step
    from the clean x, so it does not overshoot and there is no ``official`` switch here.
    """

    needs_saliency = True
    saliency_kind = "map"
    start = "normal 0.001"  # its TRADES branch: x + 0.001 N(0, 1)
    p: float = 0.5
    beta: float = 1.0
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)

    def __post_init__(self):
        self.check_mixture(self.p, self.eps)

    def trades(self) -> TRADES:
        return TRADES(beta=self.beta, eps=self.eps, steps=self.steps,
                      step_size=self.step_size)

    def perturbed(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """The batch's adversarial input (SAT or TRADES branch)."""
        if coin(self.p, ctx.generator, batch.x.device):
            return self.sat_input(batch, ctx)
        return self.trades().adversarial(model, batch, ctx)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return self.trades().loss_at(model, batch, self.perturbed(model, batch, ctx))

"""TRADES (Zhang et al. 2019): CE on clean x plus beta * KL at the KL-maximising example."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks.trades_kl import TradesKL, trades_kl
from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import Batch, Loss, StepContext, TrainingMethod


@TRAINING.register("trades")
@dataclass(frozen=True)
class TRADES(TrainingMethod):
    """``CE(model(x), y) + beta * KL(model(x) || model(x_adv))`` (batch mean).

    The inner maximisation is :class:`pipeline.attacks.trades_kl.TradesKL` with
    ``reference=True``: start ``x + 0.001 * N(0, 1)`` drawn with ``ctx.generator``,
    ``steps`` signed steps on the summed KL to the clean prediction, BatchNorm in
    ``ctx.bn_mode``, the last iterate.

    Args:
        beta: weight of the robust KL term (6, the paper's CIFAR-10 setting).
        eps: l-inf radius (8/255). steps: inner steps (10). step_size: 2/255.
    """

    start = "normal 0.001"  # x + 0.001 N(0, 1), TRADES' reference
    beta: float = 6.0
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)

    def attack(self, ctx: StepContext) -> TradesKL:
        """The inner maximisation (built per call: it carries ``ctx.generator``)."""
        return TradesKL(eps=self.eps, steps=self.steps, step_size=self.step_size,
                        bn_mode=ctx.bn_mode, reference=True, generator=ctx.generator)

    def adversarial(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """The KL-maximising example of the batch."""
        return self.attack(ctx)(model, batch.x, batch.y)

    def loss_at(self, model: nn.Module, batch: Batch, x_adv: torch.Tensor) -> Loss:
        """The TRADES objective for a given adversarial input, with the logits at
        ``x_adv`` (the last forward pass)."""
        logits = model(batch.x)
        logits_adv = model(x_adv)
        robust = trades_kl(logits_adv, logits)
        return Loss(F.cross_entropy(logits, batch.y) + self.beta * robust, logits_adv)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return self.loss_at(model, batch, self.adversarial(model, batch, ctx))

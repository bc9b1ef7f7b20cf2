"""TRADES + uniform noise (paper 000, baseline "TRADES + Uniform Noise"), in two readings.

``trades_uniform`` does what the public code does (``Puneet2000/SAT_ECML2020``,
``attack.py``, ``AttackTRADES.attack4``, trained by ``teacher_ntrades.py``): one coin per
batch picks the clean batch plus uniform noise or the KL-maximising example as the input
of the KL term, with ``beta = 1``; the clean CE term stays. ``trades_uniform_add`` adds
the noise on top of the finished KL example instead (up to ``eps + noise_eps``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    NoiseCoin,
    StepContext,
    uniform_noise,
)
from pipeline.train.trades import TRADES


@TRAINING.register("trades_uniform")
@dataclass(frozen=True)
class TRADESUniform(NoiseCoin, TRADES):
    """``CE(model(x), y) + beta * KL(model(x) || model(x'))``: x' = ``clip(x + u)``,
    u ~ U[-eps, eps], with probability ``p``, else the KL-maximising example.

    Args:
        beta: weight of the KL term (1.0, the public code's; TRADES' own default is 6).
        eps, steps, step_size: as :class:`TRADES` (8/255, 10, 2/255); ``eps`` is also
            the noise amplitude (the public code: 8/255).
        p: probability that a batch takes the noise branch (0.5; one coin per batch
            from ``ctx.generator``, as the public code). p = 0 is TRADES.
    """

    beta: float = 1.0

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return self.loss_at(model, batch, self.perturbed(model, batch, ctx))


@TRAINING.register("trades_uniform_add")
@dataclass(frozen=True)
class TRADESUniformAdd(TRADES):
    """TRADES whose KL term is taken at ``clip(x_adv + u)``, u ~ U[-noise_eps, noise_eps].

    The noise is added to every KL-maximising example and not projected back, so the
    total perturbation can reach ``eps + noise_eps`` (16/255 by default): "additional"
    noise read literally, not the public code's rule (that is ``trades_uniform``). The
    clean CE term stays on x. Fields as :class:`TRADES` (beta 6) plus ``noise_eps``
    (8/255).
    """

    noise_eps: float = budget_field(8 / 255)

    def perturbed(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """``clip(x_adv + u, 0, 1)``: up to ``eps + noise_eps`` from x."""
        return uniform_noise(self.adversarial(model, batch, ctx), self.noise_eps,
                             ctx.generator)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return self.loss_at(model, batch, self.perturbed(model, batch, ctx))

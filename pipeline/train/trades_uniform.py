"""TRADES + uniform noise (paper 000, baseline "TRADES + Uniform Noise")."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import Batch, Loss, StepContext, uniform_noise
from pipeline.train.trades import TRADES


@TRAINING.register("trades_uniform")
@dataclass(frozen=True)
class TRADESUniform(TRADES):
    """TRADES whose robust term is taken at ``clip(x_adv + u)``, u ~ U[-noise_eps, noise_eps].

    As for ``pgd_at_uniform``, paper 000 only says the data is "additionally perturbed";
    we add the noise to the KL-maximising example (not projected back, so the total can
    reach ``eps + noise_eps``) and keep the clean CE term on x. Fields as
    :class:`TRADES` plus ``noise_eps`` (8/255).
    """

    noise_eps: float = budget_field(8 / 255)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        x_adv = self.adversarial(model, batch, ctx)
        return self.loss_at(
            model, batch, uniform_noise(x_adv, self.noise_eps, ctx.generator)
        )

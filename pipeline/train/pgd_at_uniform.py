"""PGD-AT + uniform noise (paper 000, baseline "PGD + Uniform Noise")."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    cross_entropy_at,
    uniform_noise,
)
from pipeline.train.pgd_at import PGDAT


@TRAINING.register("pgd_at_uniform")
@dataclass(frozen=True)
class PGDATUniform(PGDAT):
    """``CE(model(clip(x_adv + u)), y)``, u ~ U[-noise_eps, noise_eps] per element.

    Paper 000 (Sec. 4, baseline v) says only that the PGD-AT training data "is
    additionally perturbed with uniform noise" of 8/255. We add the noise to the
    adversarial example (after PGD, not projected back), so the total perturbation can
    reach ``eps + noise_eps``; the noise is "additional" in that sense. Pixels stay in
    [0, 1]. Fields as :class:`PGDAT` plus ``noise_eps`` (8/255).
    """

    noise_eps: float = budget_field(8 / 255)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        x_adv = self.adversarial(model, batch, ctx)
        x_noisy = uniform_noise(x_adv, self.noise_eps, ctx.generator)
        return cross_entropy_at(model, x_noisy, batch.y)

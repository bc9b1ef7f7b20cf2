"""PGD-AT + uniform noise (paper 000, baseline "PGD + Uniform Noise"), in two readings.

Paper 000 (Sec. 4, baseline v) says only that the PGD-AT training data "is additionally
perturbed with uniform noise" of 8/255. ``pgd_at_uniform`` does what the public code
does (``Puneet2000/SAT_ECML2020``, ``attack.py``, ``AttackPGD.attack4``, trained by
``teacher_nadv.py``): one coin per batch picks the clean batch plus uniform noise or the
PGD example, so every input stays within eps. ``pgd_at_uniform_add`` adds the noise on
top of the finished PGD example instead (up to ``eps + noise_eps``).
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
    cross_entropy_at,
    uniform_noise,
)
from pipeline.train.pgd_at import PGDAT


@TRAINING.register("pgd_at_uniform")
@dataclass(frozen=True)
class PGDATUniform(NoiseCoin, PGDAT):
    """``CE(model(x'), y)``: x' = ``clip(x + u)``, u ~ U[-eps, eps], with probability
    ``p``, else the PGD example.

    Args:
        eps, steps, step_size, random_start: as :class:`PGDAT` (8/255, 10, 2/255, True);
            ``eps`` is also the noise amplitude (the public code: 8/255).
        p: probability that a batch takes the noise branch (0.5; one coin per batch
            from ``ctx.generator``, as the public code). p = 0 is PGD-AT.

    With p = 0.5 an epoch costs about half of PGD-AT's.
    """

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.perturbed(model, batch, ctx), batch.y)


@TRAINING.register("pgd_at_uniform_add")
@dataclass(frozen=True)
class PGDATUniformAdd(PGDAT):
    """``CE(model(clip(x_adv + u)), y)``, u ~ U[-noise_eps, noise_eps] per element.

    The noise is added to every PGD example and not projected back, so the total
    perturbation can reach ``eps + noise_eps`` (16/255 by default): "additional" noise
    read literally, not the public code's rule (that is ``pgd_at_uniform``). Pixels stay
    in [0, 1]. Fields as :class:`PGDAT` plus ``noise_eps`` (8/255).
    """

    noise_eps: float = budget_field(8 / 255)

    def perturbed(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """``clip(x_adv + u, 0, 1)``: up to ``eps + noise_eps`` from x."""
        return uniform_noise(self.adversarial(model, batch, ctx), self.noise_eps,
                             ctx.generator)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.perturbed(model, batch, ctx), batch.y)

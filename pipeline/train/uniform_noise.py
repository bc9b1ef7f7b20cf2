"""Training on inputs perturbed by uniform noise (paper 000, baseline "Original + Uniform")."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
    uniform_noise,
)


@TRAINING.register("uniform_noise")
@dataclass(frozen=True)
class UniformNoise(TrainingMethod):
    """``CE(model(clip(x + u)), y)`` with ``u ~ U[-eps, eps]`` per pixel and channel.

    Args:
        eps: noise amplitude in pixels ([0, 1] scale); paper 000 uses 8/255.
    """

    eps: float = budget_field(8 / 255)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        x_noisy = uniform_noise(batch.x, self.eps, ctx.generator)
        return cross_entropy_at(model, x_noisy, batch.y)

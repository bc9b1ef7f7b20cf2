"""Training on inputs perturbed by uniform noise (paper 000, baseline "Original + Uniform")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import Batch, StepContext, TrainingMethod, uniform_noise


@TRAINING.register("uniform_noise")
@dataclass(frozen=True)
class UniformNoise(TrainingMethod):
    """``CE(model(clip(x + u)), y)`` with ``u ~ U[-eps, eps]`` per pixel and channel.

    Args:
        eps: noise amplitude in pixels ([0, 1] scale); paper 000 uses 8/255.
    """

    eps: float = budget_field(8 / 255)

    def batch_loss(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        x_noisy = uniform_noise(batch.x, self.eps, ctx.generator)
        return F.cross_entropy(model(x_noisy), batch.y)

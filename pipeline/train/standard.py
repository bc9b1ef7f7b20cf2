"""Standard training: cross entropy on the (augmented) clean batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.train import TRAINING
from pipeline.train.method import Batch, StepContext, TrainingMethod


@TRAINING.register("standard")
@dataclass(frozen=True)
class Standard(TrainingMethod):
    """``CE(model(x), y)``; no hyperparameters."""

    def batch_loss(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        return F.cross_entropy(model(batch.x), batch.y)

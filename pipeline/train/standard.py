"""Standard training: cross entropy on the (augmented) clean batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)


@TRAINING.register("standard")
@dataclass(frozen=True)
class Standard(TrainingMethod):
    """``CE(model(x), y)``; no hyperparameters."""

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, batch.x, batch.y)

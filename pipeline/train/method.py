"""The training-method protocol: what a method sees (Batch, StepContext) and must return.

A registered training method is a frozen dataclass whose fields are its hyperparameters.
The single loop (``loop.py``) owns optimiser, schedule, backward, logging and
checkpoints; a method only turns a batch into a scalar loss, crafting whatever perturbed
inputs it needs (STYLE.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.cache.batch import Batch

BN_MODES = ("eval", "train")

__all__ = ["BN_MODES", "Batch", "StepContext", "TrainingMethod", "uniform_noise"]


@dataclass
class StepContext:
    """Where the loop is, and what a method may use while building its loss.

    Args:
        epoch: 0-based epoch; epochs: total epochs; step: global optimiser step.
        device: the training device; num_classes: classes of the data set.
        bn_mode: BatchNorm mode while crafting training attacks (``eval``/``train``).
        generator: RNG on ``device`` for the method's own noise (saved on resume).
    """

    epoch: int
    epochs: int
    step: int
    device: torch.device
    num_classes: int
    bn_mode: str = "eval"
    generator: torch.Generator | None = None


class TrainingMethod:
    """Base of training methods (subclasses are frozen dataclasses and registered).

    ``needs_saliency`` is True for stage-two methods that read ``batch.saliency`` /
    ``batch.masks``; the stage refuses to start them without a source.
    ``saliency_kind`` says where the stage puts the sources named on the command line:
    ``map`` (cached maps -> ``batch.saliency``) or ``mask`` (cached salience masks ->
    ``batch.masks``).
    """

    needs_saliency: bool = False
    saliency_kind: str = "map"

    def prepare_saliency(self, name: str, arr):
        """Applied once to each loaded map source (numpy ``[N, C, H, W]``) before
        streaming, e.g. a per-image transform; default: unchanged."""
        return arr

    def batch_loss(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """Scalar loss of one batch; ``model`` is in train mode when this is called."""
        raise TypeError(f"{type(self).__name__} does not define batch_loss")

    def on_epoch_start(self, model: nn.Module, ctx: StepContext) -> None:
        """Hook run before each epoch (per-epoch state such as PART's maps); default none."""


def uniform_noise(
    x: torch.Tensor, eps: float, generator: torch.Generator | None
) -> torch.Tensor:
    """``clip(x + U[-eps, eps], 0, 1)`` drawn with ``generator`` (on x's device)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * u - 1) * eps).clamp(0, 1)

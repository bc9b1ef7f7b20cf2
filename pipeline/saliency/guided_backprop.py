"""Guided Backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, guided_logit_grad


@SALIENCY.register("gbp")
@dataclass(frozen=True)
class GuidedBackprop(SaliencyMethod):
    """Gradient of the target logit with every ReLU's backward clamped to ``>= 0``.

    Implemented with temporary forward hooks on the model's ``nn.ReLU`` modules (all
    salpipe models use modules, so no ReLU is missed, unlike the public SAT code), one
    batched backward pass. Equals Captum's ``GuidedBackprop``. No hyperparameters.
    """

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return guided_logit_grad(model, x, target)

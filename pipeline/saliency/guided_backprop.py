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

    Implemented with temporary forward hooks on the model's ``nn.ReLU`` modules, one
    batched backward pass. Every registered salpipe model writes each ReLU as its own
    module, so none is missed (unlike the public SAT code, whose functional ReLUs turn
    its "GBP" into the plain gradient); ``tests/saliency/test_gbp_relu_modules.py``
    checks this on each model by watching every ReLU-like call of a forward pass. On
    models with only module ReLUs this equals Captum's ``GuidedBackprop`` (which shares
    the module-only blind spot). No hyperparameters.
    """

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return guided_logit_grad(model, x, target)

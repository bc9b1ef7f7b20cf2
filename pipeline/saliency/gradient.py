"""Vanilla gradient saliency (Simonyan et al. 2014)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, target_logit_grad


@SALIENCY.register("grad")
@dataclass(frozen=True)
class Gradient(SaliencyMethod):
    """Gradient of the target class's logit with respect to the input pixels, batched.

    Equals Captum's ``Saliency(abs=False)``. Takes no hyperparameters.
    """

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return target_logit_grad(model, x, target)

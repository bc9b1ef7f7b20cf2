"""Enhanced Guided Backpropagation (Gu & Tresp, paper 003, Sec. 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, guided_logit_grad


def contrast_class(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The strongest class other than ``target`` by logit (the runner-up when the
    target is the prediction, the prediction when it is not)."""
    if logits.shape[1] < 2:
        raise ValueError("enhanced_gbp needs at least two classes")
    return logits.scatter(1, target[:, None], float("-inf")).argmax(1)


@SALIENCY.register("enhanced_gbp")
@dataclass(frozen=True)
class EnhancedGuidedBackprop(SaliencyMethod):
    """Per channel c: ``max(0, s_c^k / |s_c^k|_1 - s_c^m / |s_c^m|_1)``.

    ``s^k`` and ``s^m`` are the raw guided-backprop maps of the target class k and the
    contrast class m = the strongest other class by logit (as the keras_explain code);
    ``|.|_1`` is the L1 norm over the channel's pixels (the paper's channel-wise energy
    normalisation, L1 not L2). Maps are not ReLU-clipped before normalising. Both maps
    come from one batched backward pass of ``2N`` images. No hyperparameters.
    """

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            other = contrast_class(model(x), target)
        both = guided_logit_grad(model, torch.cat([x, x]), torch.cat([target, other]))
        s_k, s_m = both.chunk(2)

        def energy_normalised(s: torch.Tensor) -> torch.Tensor:
            return s / s.abs().sum(dim=(2, 3), keepdim=True).clamp(min=1e-12)

        return (energy_normalised(s_k) - energy_normalised(s_m)).clamp(min=0)

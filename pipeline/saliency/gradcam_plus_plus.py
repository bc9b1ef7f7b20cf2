"""Grad-CAM++ (Chattopadhay et al. 2018) on the model's CAM layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import (
    SaliencyMethod,
    layer_activation_grad,
    resolve_layer,
    upsample_map,
)


def gradcampp_low_res(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM++ at the layer's resolution, ``[N, 1, h, w]``, unnormalised.

    Weights as pytorch-grad-cam's ``GradCAMPlusPlus`` (the closed form of the paper's
    Eq. 19 with exponential scores, in terms of first-order gradients):
    ``a = g^2 / (2 g^2 + sum_hw(A) g^3)``, ``w_k = sum_hw(a * relu(g))``,
    map = ``relu(sum_k w_k A_k)``.
    """
    acts, grads = layer_activation_grad(model, resolve_layer(model, layer), x, target)
    g2 = grads.pow(2)
    g3 = grads.pow(3)
    sum_acts = acts.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_acts * g3 + 1e-6)  # eps as pytorch-grad-cam
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(1, keepdim=True).clamp(min=0)


@SALIENCY.register("gradcampp")
@dataclass(frozen=True)
class GradCAMPlusPlus(SaliencyMethod):
    """Grad-CAM++ upsampled bilinearly to the input size, broadcast to C channels.

    Raw scale (pytorch-grad-cam min-max normalises each map; we leave that to
    :func:`pipeline.saliency.transforms.normalise`). Batched, on the model's device.

    Args:
        layer: dotted name of the target layer; None uses ``model.cam_layer``.
    """

    layer: str | None = None

    def low_res(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The map at the layer's resolution, ``[N, 1, h, w]`` (grad enabled by caller)."""
        return gradcampp_low_res(model, x, target, self.layer)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return upsample_map(self.low_res(model, x, target), x)

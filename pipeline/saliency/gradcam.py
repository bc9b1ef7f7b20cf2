"""Grad-CAM (Selvaraju et al. 2017) on the model's CAM layer."""

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


@SALIENCY.register("gradcam")
@dataclass(frozen=True)
class GradCAM(SaliencyMethod):
    """``relu(sum_k mean_hw(dY_t/dA_k) A_k)`` upsampled bilinearly to the input size.

    The one-channel map is broadcast to the input's C channels. Not normalised (raw
    scale; see :func:`pipeline.saliency.transforms.normalise`).

    Args:
        layer: dotted name of the target layer; None uses ``model.cam_layer``.
    """

    layer: str | None = None

    def low_res(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The map at the layer's resolution, ``[N, 1, h, w]`` (grad enabled by caller)."""
        acts, grads = layer_activation_grad(model, resolve_layer(model, self.layer), x, target)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return (weights * acts).sum(1, keepdim=True).clamp(min=0)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return upsample_map(self.low_res(model, x, target), x)

"""Guided Grad-CAM++: guided backprop times the upsampled Grad-CAM++ map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, guided_logit_grad, upsample_map
from pipeline.saliency.gradcam_plus_plus import gradcampp_low_res


@SALIENCY.register("guided_gradcampp")
@dataclass(frozen=True)
class GuidedGradCAMPlusPlus(SaliencyMethod):
    """``gbp(x) * upsample(gradcampp(x))`` per channel (Selvaraju et al.'s guided
    product, with Grad-CAM++ as in paper 000). Raw scale, two backward passes.

    Args:
        layer: dotted name of the CAM layer; None uses ``model.cam_layer``.
    """

    layer: str | None = None

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cam = gradcampp_low_res(model, x, target, self.layer)
        return guided_logit_grad(model, x.detach(), target) * upsample_map(cam, x)

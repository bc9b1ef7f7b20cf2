"""Guided Grad-CAM++: guided backprop combined with the upsampled Grad-CAM++ map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, guided_logit_grad, upsample_map
from pipeline.saliency.gradcam_plus_plus import gradcampp_low_res
from pipeline.saliency.transforms import normalise

FORMULAS = ("product", "sat_code")


def combine_guided(gbp: torch.Tensor, cam: torch.Tensor, formula: str) -> torch.Tensor:
    """Guided Grad-CAM++ from its parts.

    ``product``: ``gbp * cam`` (Selvaraju et al.'s guided product; raw scale).
    ``sat_code``: ``((sign(gbp) + 1) * (minmax(cam) + 1) - 2) / 2``, as the public SAT
    code (``gradcam.py::GuidedGradCAM``, notes/peers.md A.2), whose Grad-CAM++ is
    upsampled and min-max normalised per image. In [-1, 1]: -1 where gbp < 0,
    ``(cam - 1) / 2`` where gbp = 0 and ``cam`` where gbp > 0.

    Shape:
        gbp, cam: ``[N, C, H, W]`` (cam already upsampled); returns ``[N, C, H, W]``.
    """
    if formula == "product":
        return gbp * cam
    if formula == "sat_code":
        return ((gbp.sign() + 1) * (normalise(cam, "minmax") + 1) - 2) / 2
    raise ValueError(f"guided Grad-CAM++ formula must be one of {FORMULAS}, not {formula!r}")


@SALIENCY.register("guided_gradcampp")
@dataclass(frozen=True)
class GuidedGradCAMPlusPlus(SaliencyMethod):
    """Guided backprop combined with the upsampled Grad-CAM++ map (Grad-CAM++ as in
    paper 000), per channel; two backward passes.

    Args:
        layer: dotted name of the CAM layer; None uses ``model.cam_layer``.
        formula: ``product`` (default; Selvaraju et al.'s ``gbp * upsample(cam)``, raw
            scale) or ``sat_code`` (the public SAT code's
            ``((sign(gbp) + 1) * (minmax(cam) + 1) - 2) / 2``, in [-1, 1]); see
            :func:`combine_guided`.
    """

    layer: str | None = None
    formula: str = "product"

    def __post_init__(self):
        if self.formula not in FORMULAS:
            raise ValueError(
                f"guided Grad-CAM++ formula must be one of {FORMULAS}, not {self.formula!r}"
            )

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cam = upsample_map(gradcampp_low_res(model, x, target, self.layer), x)
        gbp = guided_logit_grad(model, x.detach(), target)
        return combine_guided(gbp, cam, self.formula)

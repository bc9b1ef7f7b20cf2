"""A box from Grad-CAM++ as weak saliency (paper 000, Sec. 4.1, Eq. 10)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.core.modes import eval_mode
from pipeline.saliency import SALIENCY
from pipeline.saliency.annotations import weak_saliency_from_boxes
from pipeline.saliency.base import (
    SaliencyMethod,
    auto_batch,
    check_target,
    upsample_map,
)
from pipeline.saliency.gradcam_plus_plus import gradcampp_low_res
from pipeline.saliency.transforms import box_from_map


@SALIENCY.register("gradcampp_box")
@dataclass(frozen=True)
class GradCAMPlusPlusBox(SaliencyMethod):
    """+1 inside the box around Grad-CAM++'s largest hot region, -1 outside.

    The upsampled Grad-CAM++ map is min-max normalised per image, thresholded at
    ``threshold`` and the largest 8-connected component is boxed
    (:func:`~pipeline.saliency.transforms.box_from_map`). Paper 000 gives no
    threshold; 0.5 (half the map's range, one of Grad-CAM++'s localisation thresholds)
    is our default. The weak map is broadcast over channels; :meth:`boxes` gives the
    boxes themselves for the cache's ``bbox``, and :meth:`attribute_and_boxes` both
    from one Grad-CAM++ pass.

    Args:
        threshold: fraction of each map's range, in [0, 1].
        layer: dotted name of the CAM layer; None uses ``model.cam_layer``.
    """

    threshold: float = 0.5
    layer: str | None = None

    def __post_init__(self):
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def boxes(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Boxes ``[N, 4]`` (long, inclusive ``x0, y0, x1, y1``) in ``x``'s pixels."""
        x, target, step = x.detach(), target.to(x.device), auto_batch(x.device)
        with eval_mode(model), torch.enable_grad():
            cam = torch.cat([
                gradcampp_low_res(model, xs.clone(), ts, self.layer).detach()
                for xs, ts in zip(x.split(step), target.split(step))
            ])
        return box_from_map(upsample_map(cam, x)[:, 0], self.threshold)

    def attribute_and_boxes(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(attribute(model, x, target), boxes(model, x, target))`` from one Grad-CAM++
        pass instead of two (each image's box does not depend on its batch)."""
        check_target(x, target)
        boxes = self.boxes(model, x, target)
        return weak_saliency_from_boxes(boxes, tuple(x.shape[1:])).detach().float(), boxes

    def salience_mask(self, attr: torch.Tensor) -> torch.Tensor:
        """The box interior (where the weak map is +1), ``bool [N, H, W]``."""
        return attr[:, 0] > 0

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return weak_saliency_from_boxes(self.boxes(model, x, target), tuple(x.shape[1:]))

"""Saliency registry. A method is a class whose constructor takes hyperparameters only and
whose ``attribute(model, x, target) -> Tensor`` returns a map shaped like ``x``."""

from pipeline.registry import Registry

SALIENCY = Registry("saliency method")

from pipeline.saliency import (  # noqa: E402,F401  (registers)
    cam,
    enhanced_gbp,
    gradcam,
    gradcam_plus_plus,
    gradcampp_box,
    gradient,
    guided_backprop,
    guided_gradcam_plus_plus,
    integrated_gradients,
    sip_topk,
    smoothgrad,
)
from pipeline.saliency.base import SaliencyMethod, resolve_target  # noqa: E402

__all__ = ["SALIENCY", "SaliencyMethod", "resolve_target"]

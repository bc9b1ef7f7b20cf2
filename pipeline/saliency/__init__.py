"""Saliency registry. A method is a class whose constructor takes hyperparameters only and
whose ``attribute(model, x, target) -> Tensor`` returns a map shaped like ``x``.

Registered: ``grad``, ``gbp``, ``gradcam``, ``gradcampp``, ``gradcampp_box`` (also
``.boxes(model, x, target)``), ``guided_gradcampp``, ``smoothgrad`` (wraps any other),
``ig``, ``cam``, ``enhanced_gbp``, ``sip_topk``. Every method also has
``salience_mask(attr) -> bool [N, H, W]`` (the cache's ``mask``). Helpers:
:mod:`~pipeline.saliency.transforms` (normalise, top-k mass mask, box from a map),
:mod:`~pipeline.saliency.annotations` (boxes/masks as weak saliency),
:mod:`~pipeline.saliency.metrics` (energy inside the object mask).
"""

from pipeline.core.registry import Registry

SALIENCY = Registry("saliency method")

from pipeline.saliency import (  # noqa: F401  (registers)
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
from pipeline.saliency.base import SaliencyMethod, resolve_target

__all__ = ["SALIENCY", "SaliencyMethod", "resolve_target"]

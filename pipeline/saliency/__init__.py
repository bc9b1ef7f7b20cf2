"""Saliency registry. A method is a class whose constructor takes hyperparameters only and
whose ``attribute(model, x, target) -> Tensor`` returns a map shaped like ``x``."""

from pipeline.registry import Registry

SALIENCY = Registry("saliency method")

from pipeline.saliency import gradient  # noqa: E402,F401  (registers)
from pipeline.saliency.base import SaliencyMethod, resolve_target  # noqa: E402

__all__ = ["SALIENCY", "SaliencyMethod", "resolve_target"]

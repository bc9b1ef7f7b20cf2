"""The common shape of salpipe's classifiers: normalise -> body -> GAP -> linear."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.models import MODELS


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` inside the model, so everything outside works on [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """``fc(mean_hw(body(normalize(x))))``; ``features`` is ``body(normalize(x))``.

    Subclasses build ``self.body`` (ending in a ReLU module) and ``self.fc``. The
    feature map of ``self.body`` is what CAM and Grad-CAM read (``cam_layer``).
    """

    normalize: Normalize
    body: nn.Module
    fc: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last conv feature map ``[N, K, h, w]`` (post-ReLU)."""
        return self.body(self.normalize(x))

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output is ``features(x)`` (target layer for Grad-CAM)."""
        return self.body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_model(
    arch: str,
    num_classes: int,
    *,
    width: int | None = None,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.25, 0.25, 0.25),
) -> ImageClassifier:
    """Build ``arch`` from the registry; ``width`` None keeps the architecture's default."""

    kw = {"mean": tuple(mean), "std": tuple(std)}
    if width is not None:
        kw["width"] = int(width)
    return MODELS.get(arch)(num_classes, **kw)

"""The batch type every training stream yields and every training method reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """One training batch, already on the device and augmented.

    Shape:
        x: ``[B, C, H, W]`` float in [0, 1]; y: ``[B]`` long; index: ``[B]`` long (data
        set indices, for per-image state); saliency: source -> float ``[B, C, H, W]``
        (augmented exactly like x); masks: source -> bool ``[B, 1, H, W]``.
    """

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    saliency: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

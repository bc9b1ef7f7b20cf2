"""Class activation maps (Zhou et al. 2016), the interpreter of paper 004."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, upsample_map


def class_activation_map(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``sum_k W[target, k] A_k`` at feature resolution, ``[N, 1, h, w]``, unnormalised.

    Needs ``model.features`` (GAP-able map) and ``model.fc`` (every salpipe model);
    differentiable in ``x`` (the Int family trains through it).
    """
    if not (hasattr(model, "features") and isinstance(getattr(model, "fc", None), nn.Linear)):
        raise ValueError(f"CAM needs model.features and a linear model.fc; "
                         f"{type(model).__name__} lacks them")
    feats = model.features(x)
    w = model.fc.weight[target]  # [N, K]
    return torch.einsum("nk,nkhw->nhw", w, feats)[:, None]


@SALIENCY.register("cam")
@dataclass(frozen=True)
class CAM(SaliencyMethod):
    """CAM of the target class, upsampled bilinearly to the input and broadcast to C
    channels. Unnormalised and unclipped (as the Int code): its spatial mean plus the
    fc bias is the target logit. One forward pass, no backward. No hyperparameters."""

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return upsample_map(class_activation_map(model, x, target), x)

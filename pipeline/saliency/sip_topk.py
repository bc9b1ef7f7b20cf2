"""SIP-AT's synthetic salience mask (paper 002, Eq. 7-8)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, target_logit_grad
from pipeline.saliency.transforms import channel_energy, topk_mass_mask


@SALIENCY.register("sip_topk")
@dataclass(frozen=True)
class SIPTopK(SaliencyMethod):
    """1 on the smallest top-k set of pixels holding ``mass`` of the total |grad|, else 0.

    ``grad`` is the gradient of the target logit (SIP-AT uses the teacher's true class:
    run it with target ``label``). Eq. 7 ranks single elements ``(c, h, w)``; we rank
    pixels by the channel-summed ``sum_c |grad_c|`` so the mask is one spatial set,
    broadcast to the C channels (what ``delta * (1 - M)`` and the cache's 1-plane
    ``mask`` need).

    Args:
        mass: share of the gradient mass the set must hold (0.5 in the paper).
    """

    mass: float = 0.5

    def __post_init__(self):
        if not 0 < self.mass <= 1:
            raise ValueError(f"mass must be in (0, 1], got {self.mass}")

    def salience_mask(self, attr: torch.Tensor) -> torch.Tensor:
        """The top-k set itself (the map's non-zero pixels), ``bool [N, H, W]``."""
        return attr[:, 0] > 0

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = topk_mass_mask(channel_energy(target_logit_grad(model, x, target)), self.mass)
        return mask[:, None].to(x.dtype).expand(-1, x.shape[1], -1, -1).contiguous()

"""Saliency quality where the data set has object masks."""

from __future__ import annotations

import torch

from pipeline.saliency.transforms import channel_energy


def energy_in_mask(
    saliency: torch.Tensor, mask: torch.Tensor, has_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of each map's |saliency| energy (channel-summed) inside the object mask.

    An energy-based pointing game: 1 = all saliency on the object; a map spread
    uniformly scores the object's area fraction. A map with zero energy scores 0.

    Args:
        saliency: ``[N, C, H, W]`` (or ``[N, H, W]``).
        mask: bool ``[N, H, W]`` (or ``[N, 1, H, W]``).
        has_mask: optional bool ``[N]``; images without a mask (and images whose mask
            is empty) are ignored: their score is NaN (use ``nanmean``).

    Returns:
        float ``[N]``.
    """
    energy = channel_energy(saliency.float())
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.shape != energy.shape:
        raise ValueError(
            f"mask {tuple(mask.shape)} does not match saliency {tuple(saliency.shape)}"
        )
    mask = mask.bool().to(energy.device)
    total = energy.flatten(1).sum(1)
    inside = (energy * mask).flatten(1).sum(1)
    share = torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), 0.0)
    valid = mask.flatten(1).any(1)
    if has_mask is not None:
        valid = valid & has_mask.to(energy.device).bool()
    return torch.where(valid, share, torch.full_like(share, float("nan")))

"""Per-image transforms of saliency maps used by the cache and stage two.

All functions are batched over the first axis and keep the input's device.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import ndimage

log = logging.getLogger(__name__)

NORMALISATIONS = ("maxabs", "minmax", "sign", "raw")


def _per_image(t: torch.Tensor) -> torch.Tensor:
    """``[N, ...] -> [N, D]`` (an empty batch too; ``[N]`` becomes ``[N, 1]``)."""
    return t.flatten(1) if t.dim() > 1 else t.reshape(-1, 1)


def normalise(attr: torch.Tensor, how: str = "maxabs") -> torch.Tensor:
    """Normalise each image's map on its own; differentiable (SAD's exact gradient mode
    backpropagates through it) and dtype-preserving.

    The one per-image normalisation of the package: the SAD wrapper's map, SAT's
    ``minmax`` transform and :func:`box_from_map` all call it.

    Args:
        attr: maps ``[N, ...]``; a floating tensor keeps its dtype (float64 stays
            float64, float16 stays float16: cast first to compute in float32), any other
            dtype is cast to float32.
        how: ``maxabs`` (divide by max |value|: [-1, 1], sign kept), ``minmax`` (to
            [0, 1], as SAT's code and pytorch-grad-cam), ``sign`` (-1/0/+1, what SAT uses
            for GBP) or ``raw`` (unchanged values, a new tensor). A constant map becomes
            0 under ``minmax`` and 1 (its sign) under ``maxabs``; an all-zero map stays
            0 (never NaN).

    Returns:
        a float tensor shaped like ``attr``.
    """
    if how not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, not {how!r}")
    if not attr.is_floating_point():
        attr = attr.float()
    if how == "raw":
        return attr.clone()
    if how == "sign":
        return attr.sign()
    flat = _per_image(attr)
    if how == "maxabs":
        scale = flat.abs().amax(1, keepdim=True)
        out = flat / torch.where(scale > 0, scale, torch.ones_like(scale))
    else:  # minmax
        lo = flat.amin(1, keepdim=True)
        rng = flat.amax(1, keepdim=True) - lo
        out = (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    return out.view_as(attr)


def channel_energy(attr: torch.Tensor) -> torch.Tensor:
    """``sum_c |attr_c|`` per pixel: ``[N, C, H, W] -> [N, H, W]`` (``[N, H, W]`` kept)."""
    return attr.abs().sum(1) if attr.dim() == 4 else attr.abs()


def topk_mass_mask(abs_map: torch.Tensor, mass: float = 0.5) -> torch.Tensor:
    """The smallest top-k set of each image's values holding ``mass`` of its total.

    SIP-AT's rule (paper 002, Eq. 7-8): sort the values in decreasing order and keep
    the first k, k the least with ``sum(top k) >= mass * sum(all)``. Ties are broken by
    position (stable sort), so the mask is deterministic. An all-zero map gives an empty
    mask (the empty set already holds half of nothing).

    Args:
        abs_map: non-negative values ``[N, ...]`` (e.g. :func:`channel_energy`).
        mass: the share of the total to hold, in (0, 1].

    Returns:
        bool mask shaped like ``abs_map``.
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    if (abs_map < 0).any():
        raise ValueError("topk_mass_mask needs non-negative values (pass |map|)")
    flat = _per_image(abs_map).double()
    vals, order = flat.sort(dim=1, descending=True, stable=True)
    csum = vals.cumsum(1)
    total = csum[:, -1:]
    # k = 1 + number of prefixes still short of the mass; 0 when the map is all zero
    k = (csum < mass * total).sum(1) + 1
    k = torch.where(total[:, 0] > 0, k.clamp(max=flat.shape[1]), torch.zeros_like(k))
    keep = torch.arange(flat.shape[1], device=flat.device)[None, :] < k[:, None]
    mask = torch.zeros_like(keep)
    mask.scatter_(1, order, keep)
    return mask.view(abs_map.shape)


def salience_mask(attr: torch.Tensor, mass: float = 0.5) -> torch.Tensor:
    """The cache's ``mask`` for any map: :func:`topk_mass_mask` of the channel-summed
    |attr|. ``[N, C, H, W] -> bool [N, H, W]``."""
    return topk_mass_mask(channel_energy(attr), mass)


def box_from_map(saliency: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Box around the largest connected component of each thresholded map.

    Each map (channel mean when ``[N, C, H, W]``) is min-max normalised to [0, 1],
    pixels ``>= threshold`` are kept, and the largest 8-connected component (first in
    raster order on ties) is boxed. A map with no pixel above the threshold (a constant
    map, e.g. an all-zero Grad-CAM) gets the whole image as its box, logged.

    Args:
        saliency: ``[N, H, W]`` or ``[N, C, H, W]``.
        threshold: in [0, 1], a fraction of each map's range.

    Returns:
        long tensor ``[N, 4]`` of inclusive corners ``(x0, y0, x1, y1)``.
    """

    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    maps = saliency.float().mean(1) if saliency.dim() == 4 else saliency.float()
    if maps.dim() != 3:
        raise ValueError(f"box_from_map needs [N,H,W] or [N,C,H,W], got {tuple(saliency.shape)}")
    norm = normalise(maps, "minmax")
    flat = _per_image(maps)
    above = ((norm >= threshold) & (flat.amax(1) > flat.amin(1))[:, None, None]).cpu().numpy()
    n, h, w = maps.shape
    boxes = np.tile(np.array([0, 0, w - 1, h - 1], dtype=np.int64), (n, 1))
    eight = np.ones((3, 3), dtype=bool)
    empty = 0
    for i in range(n):
        labels, count = ndimage.label(above[i], structure=eight)
        if count == 0:
            empty += 1
            continue
        sizes = np.bincount(labels.ravel())[1:]
        ys, xs = np.nonzero(labels == 1 + int(sizes.argmax()))
        boxes[i] = (xs.min(), ys.min(), xs.max(), ys.max())
    if empty:
        log.info("box_from_map: %d of %d maps had nothing above %.2f; whole-image box",
                 empty, n, threshold)
    return torch.from_numpy(boxes).to(saliency.device)

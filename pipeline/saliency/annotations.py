"""Data-set annotations as weak saliency (paper 000, Eq. 10): +1 inside, -1 outside."""

from __future__ import annotations

import torch


def _missing(kind: str, dataset: str) -> ValueError:
    source = {"masks": "annotation.mask", "boxes": "annotation.bbox"}[kind]
    return ValueError(
        f"data set {dataset!r} has no {kind}; the {source} source "
        f"needs a data set with {kind} (e.g. flowers17 has masks, cub200/tinyimagenet boxes)"
    )


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes ``[N, 4]`` (x0, y0, x1, y1, inclusive pixel corners) -> bool ``[N, H, W]``."""
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [N, 4] (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    b = boxes.long()
    if ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any():
        bad = torch.nonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[:5, 0].tolist()
        raise ValueError(f"boxes with x1 < x0 or y1 < y0 at rows {bad}")
    xs = torch.arange(width, device=b.device)[None, None, :]
    ys = torch.arange(height, device=b.device)[None, :, None]
    inside_x = (xs >= b[:, 0, None, None]) & (xs <= b[:, 2, None, None])
    inside_y = (ys >= b[:, 1, None, None]) & (ys <= b[:, 3, None, None])
    return inside_x & inside_y


def weak_saliency_from_masks(
    masks: torch.Tensor | None,
    channels: int,
    has_mask: torch.Tensor | None = None,
    dataset: str = "this data set",
) -> torch.Tensor:
    """Eq. 10 from object masks: +1 on the object, -1 elsewhere, broadcast over channels.

    Args:
        masks: bool ``[N, H, W]`` (or ``[N, 1, H, W]``); None when the data set has none.
        channels: C of the images.
        has_mask: optional bool ``[N]``; images without a mask get an all-zero map
            (no saliency information: ``sign(0) = 0`` perturbs nothing).
        dataset: name used in the error message.

    Returns:
        float ``[N, C, H, W]``.
    """
    if masks is None:
        raise _missing("masks", dataset)
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, H, W], got {tuple(masks.shape)}")
    s = masks.bool().float() * 2 - 1
    if has_mask is not None:
        if has_mask.shape != (masks.shape[0],):
            raise ValueError(f"has_mask must be [{masks.shape[0]}], got {tuple(has_mask.shape)}")
        s = s * has_mask.to(s.device).float()[:, None, None]
    return s[:, None].expand(-1, channels, -1, -1).contiguous()


def weak_saliency_from_boxes(
    boxes: torch.Tensor | None,
    shape: tuple[int, int, int],
    dataset: str = "this data set",
) -> torch.Tensor:
    """Eq. 10 from boxes: +1 inside the box, -1 outside, broadcast over channels.

    Args:
        boxes: ``[N, 4]`` inclusive (x0, y0, x1, y1); None when the data set has none.
        shape: ``(C, H, W)`` of the images.
        dataset: name used in the error message.

    Returns:
        float ``[N, C, H, W]``.
    """
    if boxes is None:
        raise _missing("boxes", dataset)
    c, h, w = shape
    return weak_saliency_from_masks(box_masks(boxes, h, w), c, dataset=dataset)

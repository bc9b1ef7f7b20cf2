"""The pixel-perturbation recovery curve of paper 003 (Gu & Tresp, Fig. 4).

Adversarial images are perturbed at the pixels a saliency map ranks highest for the
class the model (wrongly) predicts; a map that finds the pixels carrying the attack
recovers more accuracy. Used to compare saliency methods (e.g. ``gbp`` vs ``egbp``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

FILLS = ("zero", "mean")


@torch.no_grad()
def _perturb_top(x: torch.Tensor, score: torch.Tensor, fraction: float, fill: str) -> torch.Tensor:
    n, _, h, w = x.shape
    k = round(fraction * h * w)
    if k == 0:
        return x
    top = score.flatten(1).topk(k, dim=1).indices
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=x.device)
    mask.scatter_(1, top, True)
    mask = mask.view(n, 1, h, w)
    value = torch.zeros_like(x) if fill == "zero" else x.mean((2, 3), keepdim=True).expand_as(x)
    return torch.where(mask, value, x)


def recovery_curve(
    model: nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    method,
    fractions: Sequence[float] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2),
    fill: str = "zero",
) -> list[tuple[float, float]]:
    """Accuracy on ``x_adv`` after perturbing its most salient pixels, per fraction.

    Args:
        model: the attacked classifier.
        x_adv: adversarial images ``[N, C, H, W]`` in [0, 1].
        y: true labels ``[N]``.
        method: a saliency method (``attribute(model, x, target)``); its map of the
            PREDICTED class of ``x_adv`` ranks the pixels (channel-summed, descending).
        fractions: shares of the H*W pixels perturbed.
        fill: ``zero`` (set the pixel to black) or ``mean`` (the image's channel means).

    Returns:
        ``[(fraction, accuracy w.r.t. y), ...]``.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    score = method.attribute(model, x_adv, pred).sum(1)
    out = []
    for f in fractions:
        if not 0 <= f <= 1:
            raise ValueError(f"fractions must be in [0, 1], got {f}")
        xp = _perturb_top(x_adv, score, float(f), fill)
        with torch.no_grad():
            out.append((float(f), (model(xp).argmax(1) == y).float().mean().item()))
    return out

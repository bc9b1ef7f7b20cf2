"""CAM interpretations of every class and the discrepancy measures of paper 004 (Int).

The interpreter is CAM (Zhou et al. 2016) at feature resolution, unnormalised, as the
public Int code computes it (``conv(features, W_final)``): ``I(x, i) = sum_k W[i, k]
A_k(x)`` with ``A = model.features(x)`` and ``W = model.fc.weight``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def logits_and_cams(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the CAM of every class from one forward pass (differentiable).

    Calls ``model(x)`` (so the model's own forward hooks see it) and reads
    ``features(x)`` from ``model.cam_layer``'s output with a temporary hook.

    Shape:
        x: ``[B, C, H, W]``; returns ``[B, K]`` and ``[B, K, h, w]``.
    """
    fc = getattr(model, "fc", None)
    if not (hasattr(model, "cam_layer") and isinstance(fc, nn.Linear)):
        raise ValueError(f"CAM needs model.cam_layer and a linear model.fc; "
                         f"{type(model).__name__} lacks them")
    seen: list[torch.Tensor] = []
    hook = model.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        logits = model(x)
    finally:
        hook.remove()
    cams = torch.einsum("kc,nchw->nkhw", fc.weight, seen[-1])
    return logits, cams


def discrepancy(cams: torch.Tensor, cams_adv: torch.Tensor, logits_adv: torch.Tensor,
                y: torch.Tensor, one_class: bool = False) -> torch.Tensor:
    """Per-example label-free l1 2-class discrepancy ``D~(x, x')`` (paper 004, Eq. 7).

    ``D~ = 1/2 ||I(x,y) - I(x',y)||_1 + 1/2 sum_{i != y} p~_i ||I(x,i) - I(x',i)||_1``
    with ``p~`` the softmax of the adversarial logits over the non-true classes (not
    stop-gradiented, as the public code). ``one_class`` keeps the true-class term only,
    as the 1-class measure ``||I(x,y) - I(x',y)||_1`` (``int_one_class``).

    Shape:
        cams, cams_adv: ``[B, K, h, w]``; logits_adv: ``[B, K]``; y: ``[B]``; returns
        ``[B]``.
    """
    l1 = (cams - cams_adv).abs().sum(dim=(2, 3))  # [B, K]
    true = l1.gather(1, y[:, None]).squeeze(1)
    if one_class:
        return true
    other = F.one_hot(y, logits_adv.shape[1]).bool()
    p = F.softmax(logits_adv.masked_fill(other, float("-inf")), dim=1)
    return 0.5 * true + 0.5 * (p * l1.masked_fill(other, 0.0)).sum(1)


def paired_logits_and_cams(
    model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits and CAMs of ``x`` and of ``x_adv`` from ONE forward pass of
    ``cat([x, x_adv])`` (differentiable).

    Under train-mode BatchNorm the clean and the adversarial CAMs are thus normalised
    with the same batch statistics, those of the concatenated batch (two separate passes
    would normalise each half by its own statistics and put the discrepancy partly
    down to the statistics); under eval mode the result equals two separate passes.

    Shape:
        x, x_adv: ``[B, C, H, W]``; returns ``[B, K]``, ``[B, K, h, w]``, ``[B, K]``,
        ``[B, K, h, w]`` (views of the pass's ``[2B, ...]`` outputs).
    """
    logits, cams = logits_and_cams(model, torch.cat([x, x_adv]))
    b = len(x)
    return logits[:b], cams[:b], logits[b:], cams[b:]

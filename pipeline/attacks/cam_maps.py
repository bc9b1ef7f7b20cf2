"""CAM interpretation maps and Kendall's tau, shared by the interpretation attacks (paper 004)."""

from __future__ import annotations

import torch
from torch import nn


def cam_maps(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """CAM of class ``classes[i]`` for image ``x[i]`` at the feature-map resolution.

    ``I(x, c)[p] = w_c . A(x)[:, p] / (h * w)`` with ``A = model.features(x)`` and
    ``w_c`` the final linear layer's row, so ``sum_p I(x, c)[p] = f_c(x) - b_c``: the
    completeness axiom paper 004 (Boopathy et al. 2020, Eq. 1 and Prop. 1) relies on.
    Differentiable in ``x``.

    Shape:
        x: ``[N, C, H, W]``; classes: ``[N]``; returns ``[N, h, w]``.
    """
    if not (hasattr(model, "features") and isinstance(getattr(model, "fc", None), nn.Linear)):
        raise TypeError(
            f"CAM needs an ImageClassifier with .features(x) and a linear .fc; got "
            f"{type(model).__name__}"
        )
    feats = model.features(x)
    h, w = feats.shape[-2:]
    weights = model.fc.weight[classes]  # [N, K]
    return torch.einsum("nk,nkhw->nhw", weights, feats) / (h * w)


def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b between ``a[i]`` and ``b[i]`` flattened, per row (as scipy's default).

    NaN where a row is constant (tau undefined).

    Shape:
        a, b: ``[N, ...]`` with the same shape; returns ``[N]``.
    """
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    iu = torch.triu_indices(a.shape[1], a.shape[1], offset=1, device=a.device)
    sa = (a[:, iu[0]] - a[:, iu[1]]).sign()
    sb = (b[:, iu[0]] - b[:, iu[1]]).sign()
    num = (sa * sb).sum(1)
    den = (sa.abs().sum(1) * sb.abs().sum(1)).sqrt()
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))

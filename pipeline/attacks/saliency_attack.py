"""The saliency attack of paper 000 (Fig. 2): step against the model's own saliency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.config import budget_field, build_method
from pipeline.saliency import SALIENCY


@ATTACKS.register("saliency")
@dataclass(frozen=True)
class SaliencyAttack(Attack):
    """``clip(x - eps * sign(S(x, y)))`` with S the ATTACKED model's saliency of the true class.

    Paper 000 (Mangla et al.), Fig. 2: moving every pixel against the sign of the
    saliency map removes the evidence the model uses; a model whose saliency is
    aligned with its decisions loses accuracy.

    Args:
        eps: l-inf budget.
        method: saliency method name from ``pipeline.saliency.SALIENCY`` (``grad``).
        method_params: that method's hyperparameters.
        bn_mode: BatchNorm mode (saliency methods run in eval mode themselves).

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    method: str = "grad"
    method_params: dict[str, Any] = field(default_factory=dict)
    bn_mode: str = "eval"

    def __post_init__(self):

        SALIENCY.get(self.method)  # unknown names fail at config time, listing the names

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:

        sal = build_method(SALIENCY, self.method, self.method_params, "saliency.method")
        attr = sal.attribute(model, x, y)
        return (x - self.eps * attr.sign()).clamp(0, 1)

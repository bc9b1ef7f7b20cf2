"""PGD with expectation over transformation (Athalye et al. 2018) for randomised models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import LOSSES
from pipeline.attacks.pgd import PGD


@ATTACKS.register("eot_pgd")
@dataclass(frozen=True)
class EOTPGD(PGD):
    """PGD whose gradient (and tracked loss) is the mean over ``eot_samples`` forward passes.

    For a deterministic model this equals PGD at ``eot_samples`` times the cost; for a
    model with randomness at inference (noise, SmoothGrad saliency inside the forward)
    it follows the expected loss. All PGD arguments apply, plus:

    Args:
        eot_samples: forward/backward passes averaged per step.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eot_samples: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.eot_samples < 1:
            raise ValueError("eot_pgd needs eot_samples >= 1")

    def loss_and_grad(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                      need_grad: bool):
        logits_sum, loss_sum, grad_sum = 0.0, 0.0, 0.0
        for _ in range(self.eot_samples):
            xi = x_adv.detach().requires_grad_(need_grad)
            logits = model(xi)
            loss = LOSSES[self.loss](logits, y)
            if need_grad:
                grad_sum = grad_sum + torch.autograd.grad(loss.sum(), xi)[0]
            logits_sum = logits_sum + logits.detach()
            loss_sum = loss_sum + loss.detach()
        k = self.eot_samples
        return logits_sum / k, loss_sum / k, (grad_sum / k if need_grad else None)

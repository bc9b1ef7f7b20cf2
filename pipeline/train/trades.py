"""TRADES (Zhang et al. 2019): CE on clean x plus beta * KL at the KL-maximising example."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import BN_MODES, Batch, StepContext, TrainingMethod


def trades_kl(
    logits_adv: torch.Tensor, logits_clean: torch.Tensor, reduction: str = "batchmean"
):
    """``sum_c p(x)_c (log p(x)_c - log p(x_adv)_c)``, i.e. ``kl_div(log p(x_adv), p(x))``.

    This is what the reference code (yaodongyu/TRADES ``trades.py``) computes with
    ``KLDivLoss(log_softmax(model(x_adv)), softmax(model(x)))``; the paper writes it as
    the divergence between the clean and adversarial predictions.
    """
    return F.kl_div(
        F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction=reduction
    )


def trades_attack(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    bn_mode: str = "eval",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The TRADES inner maximisation: start ``x + 0.001 * N(0, 1)``, ``steps`` signed
    steps on the (summed) KL to the clean prediction, projected to the l-inf ball and
    [0, 1] after each; the model's mode is set to ``bn_mode`` and restored.

    Shape:
        x: ``[B, C, H, W]`` in [0, 1]; returns the same shape, detached.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, not {bn_mode!r}")
    was_training = model.training
    model.train(bn_mode == "train")
    try:
        with torch.enable_grad():
            x = x.detach()
            with torch.no_grad():
                logits_clean = model(x)
            noise = torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
            x_adv = x + 0.001 * noise
            for _ in range(steps):
                x_adv.requires_grad_(True)
                loss = trades_kl(model(x_adv), logits_clean, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = x_adv.detach() + step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    finally:
        model.train(was_training)
    # steps = 0 returns the (clamped) start, as the reference does
    return x_adv.detach().clamp(0, 1)


@TRAINING.register("trades")
@dataclass(frozen=True)
class TRADES(TrainingMethod):
    """``CE(model(x), y) + beta * KL(model(x) || model(x_adv))`` (batch mean).

    Args:
        beta: weight of the robust KL term (6, the paper's CIFAR-10 setting).
        eps: l-inf radius (8/255). steps: inner steps (10). step_size: 2/255.
    """

    beta: float = 6.0
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)

    def adversarial(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """The KL-maximising example of the batch."""
        return trades_attack(
            model,
            batch.x,
            eps=self.eps,
            step_size=self.step_size,
            steps=self.steps,
            bn_mode=ctx.bn_mode,
            generator=ctx.generator,
        )

    def loss_at(
        self, model: nn.Module, batch: Batch, x_adv: torch.Tensor
    ) -> torch.Tensor:
        """The TRADES objective for a given adversarial input."""
        logits = model(batch.x)
        robust = trades_kl(model(x_adv), logits)
        return F.cross_entropy(logits, batch.y) + self.beta * robust

    def batch_loss(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        return self.loss_at(model, batch, self.adversarial(model, batch, ctx))

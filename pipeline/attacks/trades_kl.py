"""The TRADES inner maximisation (Zhang et al. 2019): an evaluation attack, and the
training method's inner step (``reference=True``).

This is the one implementation of the KL-maximising example; ``pipeline.train.trades``
builds its inner maximisation from :class:`TradesKL`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack, BestIterate
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field

START_SCALE = 0.001  # TRADES' random start: x + 0.001 * noise


def trades_kl(
    logits_adv: torch.Tensor, logits_clean: torch.Tensor, reduction: str = "batchmean"
) -> torch.Tensor:
    """``sum_c p(x)_c (log p(x)_c - log p(x_adv)_c)``, i.e. ``kl_div(log p(x_adv), p(x))``.

    This is what the reference code (yaodongyu/TRADES ``trades.py``) computes with
    ``KLDivLoss(log_softmax(model(x_adv)), softmax(model(x)))``; the paper writes it as
    the divergence between the clean and adversarial predictions.
    """
    return F.kl_div(
        F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction=reduction
    )


def kl_to_clean(logits_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-example ``KL(p_clean || softmax(logits_adv))`` (TRADES' divergence), ``[N]``."""
    log_q = F.log_softmax(logits_adv, dim=1)
    return F.kl_div(log_q, p_clean, reduction="none").sum(1)


class _BallIterate:
    """Evaluation iterate: ``delta`` in :class:`LinfBall`, start ``U[-0.001, 0.001]``."""

    def __init__(self, x: torch.Tensor, eps: float, u: torch.Tensor):
        self.x, self.ball = x, LinfBall(eps)
        self.delta = self.ball.project(x, START_SCALE * (2 * u - 1))

    def point(self) -> torch.Tensor:
        return self.x + self.delta

    def step(self, grad: torch.Tensor, alpha: float) -> None:
        self.delta = self.ball.project(self.x, self.ball.step(self.delta, grad, alpha))


class _ReferenceIterate:
    """Training iterate, the reference code's arithmetic: the point itself, start
    ``x + 0.001 * N(0, 1)`` (not projected), each step clipped to ``[x - eps, x + eps]``
    and then [0, 1]."""

    def __init__(self, x: torch.Tensor, eps: float, generator: torch.Generator | None):
        self.x, self.eps = x, eps
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        self.x_adv = x + START_SCALE * noise

    def point(self) -> torch.Tensor:
        return self.x_adv

    def step(self, grad: torch.Tensor, alpha: float) -> None:
        x_adv = self.x_adv.detach() + alpha * grad.sign()
        self.x_adv = torch.min(torch.max(x_adv, self.x - self.eps), self.x + self.eps).clamp(0, 1)


@ATTACKS.register("trades_kl")
@dataclass(frozen=True)
class TradesKL(Attack):
    """PGD on the KL divergence between clean and perturbed predictions.

    Every step ascends the summed per-example ``KL(p(x) || p(x_adv))`` by a signed
    gradient step, projected to the l-inf ball and [0, 1].

    Evaluation (``reference=False``, the default): starts at ``x + U[-0.001, 0.001]``
    (TRADES starts at ``x + 0.001 * N(0, 1)``; drawn from per-example streams here, so
    results do not depend on the batch), and per example the best iterate is kept:
    misclassified first, else largest KL, the start included.

    Training (``reference=True``, what ``pipeline.train.trades`` uses): the reference
    code's inner maximisation (yaodongyu/TRADES ``trades_loss``): start
    ``x + 0.001 * N(0, 1)`` drawn with ``generator`` (the global RNG when None), the
    last iterate returned; ``steps = 0`` returns the (clamped) start, as the reference.

    Args:
        eps: l-inf budget.
        steps: PGD steps (TRADES trains with 10).
        step_size: ``None`` -> ``eps / 4`` (TRADES: 0.007 at 8/255).
        bn_mode: BatchNorm mode.
        reference: the training variant above.
        generator: RNG of the training variant's start (set by code, not by configs).

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]`` (unused by the training variant);
        returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float | None = budget_field(None)
    bn_mode: str = "eval"
    reference: bool = False
    generator: torch.Generator | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.steps < (0 if self.reference else 1):
            raise ValueError("trades_kl needs steps >= 1 (>= 0 with reference=True)")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        alpha = self.eps / 4 if self.step_size is None else self.step_size
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        if self.reference:
            it, best = _ReferenceIterate(x, self.eps, self.generator), None
        else:
            it, best = _BallIterate(x, self.eps, self.uniform(x)), BestIterate(x)
        for t in range(self.steps + 1):
            if t == self.steps and best is None:
                break
            x_adv = it.point().requires_grad_(True)
            logits = model(x_adv)
            loss = kl_to_clean(logits, p_clean)
            if best is not None:
                best.update(x_adv, logits, y, loss)
            if t == self.steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            it.step(grad, alpha)
        return (it.point() if best is None else best.x).clamp(0, 1)

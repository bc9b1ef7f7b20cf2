"""SIP-AT (paper 002): PGD adversarial training that never perturbs salient pixels.

The perturbation is masked, ``delta' = delta * (1 - M)``, on the random start and after
every step (:class:`pipeline.attacks.threat.LinfBall` with ``mask = 1 - M`` does both,
in its ``random_start`` and ``project``). ``M`` is a salience mask streamed in
``batch.masks``: a cached ``sip_topk`` source (the paper's synthetic top-k set holding
half of the teacher's gradient mass, Eq. 7-8), any other cached source's ``mask`` (its
top-half-mass set) or the data set's human masks (``annotation.mask``).

Only training is masked: evaluation attacks every pixel, so nothing of this method
reaches ``salpipe evaluate`` (the checkpoint is a plain model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks.pgd import PGD
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)


@dataclass(frozen=True)
class MaskedPGD(PGD):
    """PGD whose threat set is ``LinfBall(eps, mask=keep)`` (``keep`` = 1 - M, float
    ``[B, 1, H, W]`` broadcast over channels). Built per batch (the mask is per batch)."""

    keep: torch.Tensor | None = None

    def threat(self, x: torch.Tensor) -> LinfBall:
        return LinfBall(self.eps, mask=self.keep)


def batch_mask(batch: Batch, source: str) -> torch.Tensor:
    """The salience mask ``M`` (bool ``[B, 1, H, W]``) of ``source`` (or the only one)."""
    if source:
        if source not in batch.masks:
            raise KeyError(f"sip_at: mask source {source!r} not streamed; the batch has "
                           f"{sorted(batch.masks) or 'no masks'}")
        return batch.masks[source]
    if len(batch.masks) != 1:
        raise ValueError(f"sip_at needs exactly one mask source (give source=...); the batch "
                         f"has {sorted(batch.masks) or 'none'}")
    return next(iter(batch.masks.values()))


@TRAINING.register("sip_at")
@dataclass(frozen=True)
class SIPAT(TrainingMethod):
    """``CE(model(x_adv), y)`` with x_adv the masked PGD example (last iterate).

    Args:
        eps, steps, step_size: PGD budget (8/255, 10 steps of 2/255: the paper's CIFAR
            setting; its CUB setting is 32 steps of 1/255).
        random_start: masked uniform start (True).
        source: which streamed mask is M (empty: the only one).
        invert: perturb only the salient pixels instead (the public code's
            ``-invert_mask``).

    BatchNorm runs in ``ctx.bn_mode`` while the example is crafted (the public code uses
    eval mode); the model's mode is restored by the attack.
    """

    needs_saliency = True
    saliency_kind = "mask"
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    random_start: bool = True
    source: str = ""
    invert: bool = False

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def adversarial(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """The masked PGD example: pixels with ``M`` set equal x exactly."""
        m = batch_mask(batch, self.source).to(batch.x.device)
        keep = m if self.invert else ~m
        attack = MaskedPGD(eps=self.eps, steps=self.steps, step_size=self.step_size,
                           random_start=self.random_start, best="last",
                           bn_mode=ctx.bn_mode, keep=keep.to(batch.x.dtype))
        return attack(model, batch.x, batch.y)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.adversarial(model, batch, ctx), batch.y)

"""The training-method protocol: what a method sees (Batch, StepContext) and must return.

A registered training method is a frozen dataclass whose fields are its hyperparameters.
The single loop (``loop.py``) owns optimiser, schedule, backward, logging and
checkpoints; a method only turns a batch into a :class:`Loss` (the scalar loss and the
logits whose accuracy is logged), crafting whatever perturbed inputs it needs (STYLE.md
section 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.cache.batch import Batch

BN_MODES = ("eval", "train")

__all__ = [
    "BN_MODES", "Batch", "Loss", "NoiseCoin", "StepContext", "TrainingMethod", "coin",
    "cross_entropy_at", "noise_or_attack", "uniform_noise",
]


class Loss(NamedTuple):
    """What :meth:`TrainingMethod.batch_loss` returns.

    Args:
        loss: the scalar loss the loop back-propagates.
        logits: ``[B, K]``, the logits whose top-1 accuracy against ``batch.y`` is the
            logged train accuracy: those of the method's last forward pass (for
            adversarial methods, on the adversarial examples), which costs nothing.
    """

    loss: torch.Tensor
    logits: torch.Tensor


@dataclass
class StepContext:
    """Where the loop is, and what a method may use while building its loss.

    Args:
        epoch: 0-based epoch; epochs: total epochs; step: global optimiser step.
        steps_per_epoch: optimiser steps per epoch (``epochs * steps_per_epoch`` is the
            run's length in steps, for schedules per step such as Int's eps ramp).
        device: the training device; num_classes: classes of the data set.
        bn_mode: BatchNorm mode while crafting training attacks (``eval``/``train``).
        generator: RNG on ``device`` for the method's own noise (saved on resume).
    """

    epoch: int
    epochs: int
    step: int
    device: torch.device
    num_classes: int
    steps_per_epoch: int = 1
    bn_mode: str = "eval"
    generator: torch.Generator | None = None


class TrainingMethod:
    """Base of training methods (subclasses are frozen dataclasses and registered).

    ``needs_saliency`` is True for stage-two methods that read ``batch.saliency`` /
    ``batch.masks``; the stage refuses to start them without a source.
    ``start`` names how a method without a ``random_start`` field starts its attack.
    ``saliency_kind`` says where the stage puts the sources named on the command line:
    ``map`` (cached maps -> ``batch.saliency``) or ``mask`` (cached salience masks ->
    ``batch.masks``).
    """

    needs_saliency: bool = False
    saliency_kind: str = "map"
    # how the training attack starts, for a method without a ``random_start`` field
    # (shown and compared by ``salpipe check-sweep``); None: it crafts no attack
    start: str | None = None

    def for_run(self, epochs: int) -> TrainingMethod:
        """This method with every setting that depends on the run's length resolved
        (e.g. SAT's alpha for a schedule shorter than the paper's); the stage trains,
        records and resumes with what this returns. Default: unchanged."""
        return self

    def prepare_saliency(self, name: str, arr):
        """Applied once to each loaded map source (numpy ``[N, C, H, W]``) before
        streaming, e.g. a per-image transform; default: unchanged."""
        return arr

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        """``Loss(loss, logits)`` of one batch: the scalar loss and the logits of the last
        forward pass (whose accuracy the loop logs); ``model`` is in train mode when this
        is called."""
        raise TypeError(f"{type(self).__name__} does not define batch_loss")

    def on_epoch_start(self, model: nn.Module, ctx: StepContext) -> None:
        """Hook run before each epoch (per-epoch state such as PART's maps); default none."""


def uniform_noise(
    x: torch.Tensor, eps: float, generator: torch.Generator | None
) -> torch.Tensor:
    """``clip(x + U[-eps, eps], 0, 1)`` drawn with ``generator`` (on x's device)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + (2 * u - 1) * eps).clamp(0, 1)


def coin(p: float, generator: torch.Generator | None, device: torch.device) -> bool:
    """True with probability ``p`` (one draw from the method's RNG)."""
    gdev = generator.device if generator is not None else device
    return bool(torch.rand((), generator=generator, device=gdev) < p)


def noise_or_attack(p: float, batch: Batch, eps: float, ctx: StepContext,
                    attack) -> torch.Tensor:
    """The public SAT code's noise baselines: one coin per batch (probability ``p``)
    between ``clip(x + U[-eps, eps])`` and ``attack()`` (the method's own example)."""
    if coin(p, ctx.generator, batch.x.device):
        return uniform_noise(batch.x, eps, ctx.generator)
    return attack()


@dataclass(frozen=True)
class NoiseCoin:
    """Mixin of the noise baselines (``pgd_at_uniform``, ``trades_uniform``): ``p``, and
    :meth:`perturbed` = :func:`noise_or_attack` with the method's own ``adversarial``."""

    p: float = 0.5

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")

    def perturbed(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """The batch's input: noise or the attack's example, within eps of x, in [0, 1]."""
        return noise_or_attack(self.p, batch, self.eps, ctx,
                               lambda: self.adversarial(model, batch, ctx))


def cross_entropy_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Loss:
    """``Loss(CE(model(x), y), model(x))`` from one forward pass."""
    logits = model(x)
    return Loss(F.cross_entropy(logits, y), logits)

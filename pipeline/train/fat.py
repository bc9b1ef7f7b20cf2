"""Friendly adversarial training, FAT (Zhang et al. 2020, "Attacks which do not kill
training make adversarial learning stronger"): PGD-AT whose inner PGD stops, per example,
``tau`` steps after the example is first misclassified (early-stopped PGD, Alg. 1), with
``tau`` raised during training.

As the public code (``zjfheart/Friendly-Adversarial-Training``): ``FAT.py`` calls
``earlystop`` with ``randominit_type="uniform_randominit"`` and ``omega=0.001`` at
``tau = adjust_tau(epoch + 1)`` (``epoch`` 0-based, 120 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import budget_field
from pipeline.core.modes import module_mode
from pipeline.train import TRAINING
from pipeline.train.method import (
    BN_MODES,
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)

REFERENCE_EPOCHS = 120
# ``adjust_tau``: tau 0 up to 1-based epoch 50 of 120, tau 1 up to 90, tau 2 after
TAU_SCHEDULE = ((50, 0), (90, 1))
LAST_TAU = 2


def dynamic_tau(epoch: int, epochs: int) -> int:
    """The public code's tau at 0-based ``epoch`` of a run of ``epochs`` epochs.

    ``adjust_tau(epoch + 1)`` over 120 epochs: tau 0 for 0-based epochs 0-49, 1 for 50-89,
    2 for 90-119. A run of ``E`` epochs keeps the fractions: tau 0 while
    ``(epoch + 1) / E <= 50 / 120``, 1 while ``<= 90 / 120``, 2 after (integer arithmetic,
    so ``E = 120`` is ``adjust_tau`` exactly). ``E = 4``: 0, 1, 1, 2; ``E = 15``: six
    epochs of 0, five of 1, four of 2; ``E = 1``: 2.
    """
    n = int(epoch) + 1
    for end, tau in TAU_SCHEDULE:
        if n * REFERENCE_EPOCHS <= end * int(epochs):
            return tau
    return LAST_TAU


def _draw(
    x: torch.Tensor, generator: torch.Generator | None, normal: bool
) -> torch.Tensor:
    gdev = generator.device if generator is not None else x.device
    draw = torch.randn if normal else torch.rand
    return draw(x.shape, generator=generator, device=gdev).to(x.device, x.dtype)


def early_stopped_pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, step_size: float,
    steps: int, tau: int, omega: float = 0.001, random_start: bool = True,
    bn_mode: str = "eval", generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Early-stopped PGD on CE, as ``earlystop`` of the public code (``loss_fn="cent"``).

    Start at ``clip(x + U[-eps, eps], 0, 1)`` (``random_start``; else at x). Each of at
    most ``steps`` iterations first looks at the current iterate: a misclassified example
    with no budget left stops there for good; a misclassified one with budget left
    spends one. Every example not stopped then moves to ``x' + step_size * sign(grad) +
    omega * N(0, 1)``, clipped to the eps ball and [0, 1]. The loop ends once every
    example has stopped; an example misclassified after the last step keeps that step.

    Args:
        eps: l-inf radius. step_size: signed step. steps: most iterations (>= 1).
        tau: misclassified iterates an example may step on before it stops.
        omega: std of the Gaussian added at every step (0.001, the public code's).
        random_start: uniform start in the ball (the public code's ``rand_init``).
        bn_mode: BatchNorm mode while attacking. generator: RNG of every draw.

    Returns:
        ``(x_adv, steps_taken)``: ``[B, C, H, W]`` detached and long ``[B]`` (its sum is
        the public code's ``count``).
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, not {bn_mode!r}")
    x = x.detach()
    x_adv = x + (2 * _draw(x, generator, False) - 1) * eps if random_start else x
    x_adv = x_adv.clamp(0, 1)
    budget = torch.full((x.shape[0],), int(tau), device=x.device)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    taken = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    with module_mode(model, bn_mode == "train"), torch.enable_grad():
        for _ in range(steps):
            xa = x_adv.detach().requires_grad_(True)
            logits = model(xa)
            wrong = logits.detach().argmax(1) != y
            active &= ~(wrong & (budget == 0))
            budget = torch.where(active & wrong, budget - 1, budget)
            if not bool(active.any()):
                break
            loss = F.cross_entropy(logits, y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xa)
            # noise drawn for the whole batch, so an example's draw does not depend on
            # which others stopped
            noise = _draw(x, generator, True)
            stepped = xa.detach() + step_size * grad.sign() + omega * noise
            stepped = torch.clamp(stepped, x - eps, x + eps).clamp(0, 1)
            x_adv = torch.where(active[:, None, None, None], stepped, xa.detach())
            taken += active.long()
    return x_adv.detach(), taken


@TRAINING.register("fat")
@dataclass(frozen=True)
class FAT(TrainingMethod):
    """``CE(model(x_adv), y)`` with x_adv from :func:`early_stopped_pgd` at this epoch's tau.

    Args:
        eps: l-inf radius (8/255; the public code 0.031). steps: most PGD steps (10).
            step_size: 2/255 (the public code: 0.007).
        tau: None (default): the public code's schedule, :func:`dynamic_tau` of
            ``ctx.epoch`` over ``ctx.epochs`` (0, 1, 2 over the first 50/120, the next
            40/120 and the last 30/120 of the run; 4 epochs: 0, 1, 1, 2). An int fixes
            tau for the whole run. Method params are part of the resume key, so a run
            cannot change tau by resuming; the schedule is what raises it within a run
            (it depends only on the epoch and the run's length, both recorded).
        omega: std of the Gaussian noise added at every PGD step (0.001).

    The PGD starts uniformly in the eps ball, as the public code's AT script.
    """

    start = "uniform"  # U[-eps, eps] in the ball, the public code's uniform_randominit
    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    tau: int | None = None
    omega: float = 0.001

    def __post_init__(self):
        if self.steps < 1 or (self.tau is not None and self.tau < 0) or self.omega < 0:
            raise ValueError("fat needs steps >= 1, tau None or >= 0, and omega >= 0")

    def tau_at(self, ctx: StepContext) -> int:
        """Tau at ``ctx.epoch``: the fixed ``tau``, else :func:`dynamic_tau`."""
        return dynamic_tau(ctx.epoch, ctx.epochs) if self.tau is None else int(self.tau)

    def adversarial(
        self, model: nn.Module, batch: Batch, ctx: StepContext
    ) -> torch.Tensor:
        """The early-stopped PGD example of the batch at ``tau_at(ctx)``."""
        x_adv, _ = early_stopped_pgd(model, batch.x, batch.y, eps=self.eps,
                                     step_size=self.step_size, steps=self.steps,
                                     tau=self.tau_at(ctx), omega=self.omega,
                                     bn_mode=ctx.bn_mode, generator=ctx.generator)
        return x_adv

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.adversarial(model, batch, ctx), batch.y)

"""Saliency-based adversarial training, SAT (paper 000, Alg. 1 and Eq. 9-10).

Per element ``i`` of the input, ``delta[i] = z[i]`` (a random +-1) with probability
``alpha ** epoch`` and ``-t(s)[i]`` otherwise; the model trains on
``clip(x + eps0 * delta, 0, 1)``. ``s`` is a cached saliency map of a teacher (or the
weak saliency of Eq. 10, +1 on the object and -1 elsewhere, cached as the annotation
sources ``annotation.mask`` / ``annotation.bbox``) and ``t`` the map transform.

The public code (``Puneet2000/SAT_ECML2020``, notes/peers.md A.2) writes the same rule
as ``x - eps * g`` where ``g`` takes the map with probability ``1 - 0.6 ** (epoch / 10)``
and a random sign otherwise, drawn per tensor element (a Bernoulli per element, as
here): ``0.6 ** (epoch / 10) = alpha ** epoch`` with ``alpha = 0.6 ** (1 / 10)`` over
the paper's 200 epochs.

A run of ``E`` epochs takes ``alpha = 0.6 ** (20 / E)`` unless ``alpha`` is set, so it
ends as far into the schedule as the paper's run (the noise share falls to
``0.6 ** 20`` at the last epoch; at ``E = 200`` this is the paper's ``0.6 ** (1 / 10)``).
The value is resolved before training (:meth:`SATSchedule.for_run`) and recorded in the
run's params.

Several sources (paper 000, Table 7): the paper selects "the saliency map to be used in
SAT randomly between these two maps", without saying how often. ``mix="image"`` (the
default) draws a source per image per step; ``mix="epoch"`` draws one source, uniformly
at random, for every image of an epoch, as the public code's ``student_ensemble.py``
does (one fair coin per epoch picks the teacher); see :func:`epoch_source`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.config import budget_field
from pipeline.saliency.transforms import normalise
from pipeline.train import TRAINING
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)

TRANSFORMS = ("sign", "minmax", "raw")
MIXES = ("image", "epoch")
PAPER_EPOCHS = 200


def schedule_alpha(epochs: int) -> float:
    """``0.6 ** (20 / epochs)``: the paper's ``0.6 ** (1/10)`` at its 200 epochs, and the
    same shape (noise share over the fraction of the run) at any other length."""
    return 0.6 ** (20 / max(int(epochs), 1))


def transform_map(s: torch.Tensor, how: str) -> torch.Tensor:
    """The map transform ``t`` of SAT, per image, idempotent (``t(t(s)) = t(s)``).

    ``sign`` (the paper; the public code's GBP): -1/0/+1. ``minmax`` (the public code's
    SmoothGrad, IG and Grad-CAM++ maps): each image's map to [0, 1], so those variants
    only darken. ``raw``: the map itself, clipped to [-1, 1] so every perturbation stays
    within ``eps0`` (annotation sources are already +-1).

    Shape:
        s: ``[B, C', H, W]`` float; returns the same shape, float32.
    """
    s = s.float()
    if how == "sign":
        return s.sign()
    if how == "minmax":
        return normalise(s, "minmax")
    if how == "raw":
        return s.clamp(-1, 1)
    raise ValueError(f"SAT transform must be one of {TRANSFORMS}, not {how!r}")


def noise_probability(alpha: float, epoch: int) -> float:
    """``alpha ** epoch``: the per-element probability of a random sign at ``epoch``."""
    return float(alpha) ** int(epoch)


def epoch_source(n_sources: int, epoch: int, generator: torch.Generator | None) -> int:
    """The source index (into the sorted source names) every image uses at ``epoch``.

    Uniform over ``n_sources``, drawn independently per epoch (so two epochs in a row may
    share a source, as with the public code's per-epoch coin). The draw is a pure
    function of ``epoch`` and the run's seed (``generator.initial_seed()``, 0 without a
    generator): every step of the epoch gets the same source without any state, the
    method's RNG stream is not consumed, and a resumed run draws the same sources.
    """
    seed = generator.initial_seed() if generator is not None else 0
    return int(np.random.default_rng([seed, int(epoch)]).integers(n_sources))


def pick_sources(saliency: dict[str, torch.Tensor], generator: torch.Generator | None,
                 batch_size: int, *, mix: str = "image", epoch: int = 0) -> torch.Tensor:
    """One map per image from one of the sources, chosen uniformly (Table 7).

    Args:
        saliency: source name -> maps ``[B, C', H, W]``.
        generator: the method's RNG (ctx.generator); ``mix="image"`` draws from it.
        batch_size: ``B``.
        mix: ``image`` (each image draws its own source at every step) or ``epoch``
            (all images of ``epoch`` take the source of :func:`epoch_source`).
        epoch: 0-based epoch (used by ``mix="epoch"`` only).

    Returns:
        ``[B, C', H, W]`` float; with one source, that source's maps.
    """
    if not saliency:
        raise ValueError("SAT needs at least one saliency source in batch.saliency "
                         "(salpipe train --saliency SOURCE)")
    if mix not in MIXES:
        raise ValueError(f"SAT mix must be one of {MIXES}, not {mix!r}")
    maps = [saliency[k] for k in sorted(saliency)]
    if len(maps) == 1:
        return maps[0]
    if mix == "epoch":  # a 1-channel map is broadcast to x later (sat_direction)
        return maps[epoch_source(len(maps), epoch, generator)]
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1:  # e.g. a 1-channel Grad-CAM++ next to a 3-channel GBP
        c = max(m.shape[1] for m in maps)
        maps = [m.expand(-1, c, -1, -1) for m in maps]
    stack = torch.stack(maps)  # [K, B, C, H, W]
    dev = stack.device
    gdev = generator.device if generator is not None else dev
    choice = torch.randint(len(maps), (batch_size,), generator=generator, device=gdev).to(dev)
    return stack[choice, torch.arange(batch_size, device=dev)]


def sat_direction(s: torch.Tensor, x: torch.Tensor, noise_prob: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Eq. 9: per element ``z`` (random +-1) with probability ``noise_prob``, else ``-s``.

    Args:
        s: transformed map ``[B, C', H, W]`` (C' 1 or C, broadcast to x).
        x: the images (shape, device and dtype of the result).
        noise_prob: ``alpha ** epoch``. generator: the method's RNG (ctx.generator).
    """
    gdev = generator.device if generator is not None else x.device
    u = torch.rand((2,) + tuple(x.shape), generator=generator, device=gdev).to(x.device)
    z = torch.where(u[0] < 0.5, -1.0, 1.0).to(x.dtype)
    take_noise = u[1] < noise_prob
    return torch.where(take_noise, z, -s.expand_as(x).to(x.dtype))


def sat_step(x: torch.Tensor, saliency: dict[str, torch.Tensor], *, eps0: float,
             noise_prob: float, transform: str, generator: torch.Generator | None,
             mix: str = "image", epoch: int = 0) -> torch.Tensor:
    """``eps0 * delta`` with delta from Eq. 9 (sources mixed as :func:`pick_sources`),
    before clipping."""
    s = transform_map(pick_sources(saliency, generator, x.shape[0], mix=mix, epoch=epoch),
                      transform)
    return eps0 * sat_direction(s, x, noise_prob, generator)


def sat_perturb(x: torch.Tensor, saliency: dict[str, torch.Tensor], *, eps0: float,
                noise_prob: float, transform: str, generator: torch.Generator | None,
                mix: str = "image", epoch: int = 0) -> torch.Tensor:
    """``clip(x + eps0 * delta, 0, 1)`` with delta from Eq. 9 (sources as
    :func:`pick_sources`)."""
    step = sat_step(x, saliency, eps0=eps0, noise_prob=noise_prob, transform=transform,
                    generator=generator, mix=mix, epoch=epoch)
    return (x + step).clamp(0, 1).detach()


@dataclass(frozen=True)
class SATSchedule:
    """The shared SAT knobs (mixed into ``sat``, ``pgd_sat`` and ``trades_sat``)."""

    eps0: float = budget_field(8 / 255)
    alpha: float | None = None  # None: schedule_alpha(epochs), resolved by for_run
    transform: str = "sign"
    mix: str = "image"  # several sources: a source per image per step, or per epoch

    def check_sat(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {self.transform!r}")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {MIXES}, not {self.mix!r}")
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    def check_mixture(self, p: float, eps: float) -> None:
        """PGD-SAT / TRADES-SAT: a valid coin ``p`` and SAT's step inside the attack's ball."""
        self.check_sat()
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if self.eps0 > eps:
            raise ValueError(f"eps0 ({self.eps0}) must not exceed eps ({eps}): every "
                             "perturbation stays within eps")

    def effective_alpha(self, epochs: int) -> float:
        """``alpha`` when set, else :func:`schedule_alpha` of the run's ``epochs``."""
        return schedule_alpha(epochs) if self.alpha is None else float(self.alpha)

    def for_run(self, epochs: int):
        """This method with ``alpha`` resolved for a run of ``epochs`` (recorded)."""
        return dataclasses.replace(self, alpha=self.effective_alpha(epochs))

    def sat_delta(self, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """``eps0 * delta`` at ``ctx.epoch`` (before clipping to [0, 1])."""
        p = noise_probability(self.effective_alpha(ctx.epochs), ctx.epoch)
        return sat_step(batch.x, batch.saliency, eps0=self.eps0, noise_prob=p,
                        transform=self.transform, generator=ctx.generator, mix=self.mix,
                        epoch=ctx.epoch)

    def sat_input(self, batch: Batch, ctx: StepContext) -> torch.Tensor:
        """The SAT-perturbed batch ``clip(x + eps0 * delta, 0, 1)`` at ``ctx.epoch``."""
        return (batch.x + self.sat_delta(batch, ctx)).clamp(0, 1).detach()

    def prepare_saliency(self, name: str, arr):
        """Applied once to each loaded source (numpy ``[N, C, H, W]``): ``t`` in float16;
        ``t`` is idempotent, so the per-batch ``t`` of :meth:`sat_input` is a no-op then."""
        t = transform_map(torch.as_tensor(arr), self.transform)
        return t.to(torch.float16).numpy()


@TRAINING.register("sat")
@dataclass(frozen=True)
class SAT(SATSchedule, TrainingMethod):
    """``CE(model(clip(x + eps0 * delta)), y)``, delta of Eq. 9 (see module docstring).

    Args:
        eps0: perturbation size (8/255). alpha: the random-sign probability at
            0-based epoch ``t`` is ``alpha ** t``; unset, ``0.6 ** (20 / epochs)`` (the
            paper's ``0.6 ** (1/10)`` at 200 epochs; recorded in the run's params).
        transform: ``sign`` (paper), ``minmax`` (public code, non-GBP maps) or ``raw``.
        mix: several ``--saliency`` sources (paper 000, Table 7): ``image`` (default;
            each image draws one uniformly per step) or ``epoch`` (one uniform draw per
            epoch for every image, as the public ``student_ensemble.py``).

    Costs one forward/backward per batch, like standard training.
    """

    needs_saliency = True
    saliency_kind = "map"

    def __post_init__(self):
        self.check_sat()

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.sat_input(batch, ctx), batch.y)

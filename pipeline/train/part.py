"""Pixel-reweighted adversarial training, PART (Zhang et al., ICML 2024).

PGD-AT whose budget is ``eps`` on the pixels the model's own CAM marks as important and
a smaller ``eps_low`` elsewhere. The public code computes Grad-CAM eps-maps before each
epoch and stores them per *batch position*, then applies them to a reshuffled,
re-augmented loader (notes/peers.md 0.3: the maps miss their images).

Choice here: the eps-map of a batch is computed from the current model's CAM on the
batch's own (already augmented) images, right before the attack. It is aligned with the
pixels it weights by construction, needs no per-index state (an index-keyed map would
still have to be cropped and flipped with its image) and is never older than the model;
it costs one no-grad forward per batch (a PGD-10 step costs eleven). The important set
is the top ``top_fraction`` of each image's CAM of the predicted class, upsampled
bilinearly (the public code thresholds a z-scored jet colouring of Grad-CAM^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks.pgd import PGD
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field
from pipeline.core.modes import eval_mode
from pipeline.train import TRAINING
from pipeline.train.interpretation import logits_and_cams
from pipeline.train.method import (
    Batch,
    Loss,
    StepContext,
    TrainingMethod,
    cross_entropy_at,
)


@dataclass(frozen=True)
class MapPGD(PGD):
    """PGD in the per-pixel box ``|delta| <= eps_map`` (``[B, 1, H, W]``) and [0, 1]."""

    eps_map: torch.Tensor | None = None

    def threat(self, x: torch.Tensor) -> LinfBall:
        return LinfBall(self.eps_map if self.eps_map is not None else self.eps)


@torch.no_grad()
def important_pixels(model: nn.Module, x: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Bool ``[B, 1, H, W]``: each image's top ``top_fraction`` pixels by the CAM of its
    predicted class (eval mode, restored), upsampled bilinearly to the input."""
    with eval_mode(model):
        logits, cams = logits_and_cams(model, x)
    pred = logits.argmax(1)
    cam = cams[torch.arange(len(x), device=x.device), pred][:, None]
    cam = F.interpolate(cam.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    flat = cam.flatten(1)
    k = max(1, round(top_fraction * flat.shape[1]))
    thresh = flat.topk(k, dim=1).values[:, -1:]
    # ties at the threshold may add pixels; the order is the CAM's, never the batch's
    return (flat >= thresh).view_as(cam)


@TRAINING.register("part")
@dataclass(frozen=True)
class PART(TrainingMethod):
    """``CE(model(x_adv), y)``, x_adv = PGD with budget ``eps`` on important pixels and
    ``eps_low`` elsewhere (see the module docstring for how the map is made).

    Args:
        eps: budget on important pixels (8/255). eps_low: elsewhere (7/255, the public
            code). top_fraction: share of pixels counted important (0.2).
        steps, step_size: PGD (10 steps of 2/255). warmup_epochs: epochs of plain
            PGD-AT first (0; the public code warms up 20 of 80 epochs).
    """

    start = "uniform"  # MapPGD's uniform start in the per-pixel box
    eps: float = budget_field(8 / 255)
    eps_low: float = budget_field(7 / 255)
    top_fraction: float = 0.2
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    warmup_epochs: int = 0

    def __post_init__(self):
        if not 0 <= self.eps_low <= self.eps:
            raise ValueError(f"need 0 <= eps_low <= eps, got {self.eps_low}, {self.eps}")
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")

    def eps_map(self, model: nn.Module, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Per-pixel budget ``[B, 1, H, W]`` for this (augmented) batch at ``ctx.epoch``."""
        if ctx.epoch < self.warmup_epochs:
            return torch.full((x.shape[0], 1, *x.shape[-2:]), float(self.eps), device=x.device)
        imp = important_pixels(model, x, self.top_fraction)
        return torch.where(imp, float(self.eps), float(self.eps_low)).to(x.dtype)

    def adversarial(self, model: nn.Module, batch: Batch, ctx: StepContext) -> torch.Tensor:
        attack = MapPGD(eps=self.eps, steps=self.steps, step_size=self.step_size,
                        best="last", bn_mode=ctx.bn_mode,
                        eps_map=self.eps_map(model, batch.x, ctx))
        return attack(model, batch.x, batch.y)

    def batch_loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> Loss:
        return cross_entropy_at(model, self.adversarial(model, batch, ctx), batch.y)

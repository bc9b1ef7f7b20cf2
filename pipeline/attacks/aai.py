"""Attack against interpretability (AAI): the CAM top-k attack (Ghorbani et al. 2019),
as used by paper 004 (Boopathy et al. 2020, Sec. 5.2, Table 3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.attacks.cam_maps import cam_maps, kendall_tau
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


def topk_mass(cam: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Share of the (ReLU'd) CAM mass that falls in the positions ``top`` ([N, k])."""
    flat = cam.flatten(1).relu()
    return flat.gather(1, top).sum(1) / flat.sum(1).clamp_min(1e-12)


@ATTACKS.register("aai")
@dataclass(frozen=True)
class AAI(Attack):
    """Move the true-class CAM's mass out of its clean top-k positions, keeping the prediction.

    PGD descends the top-k mass share of ``CAM(x', y)``; an iterate is accepted for an
    example only while the model's prediction on it equals the clean prediction, and
    the accepted iterate with the lowest top-k mass is returned (Ghorbani et al.'s
    top-k attack). It is a metric-producing attack: :meth:`example_metrics` gives
    Kendall's tau between the clean and attacked CAM of the true class, NaN where the
    prediction changed (those images are excluded; the evaluation reports the
    excluded fraction).

    Args:
        eps: l-inf budget.
        steps: PGD steps.
        step_size: ``None`` -> ``2.5 * eps / steps``.
        topk: fraction of CAM positions in the top-k set.
        bn_mode: BatchNorm mode.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    steps: int = 20
    step_size: float | None = budget_field(None)
    topk: float = 0.25
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.steps < 1 or not 0 < self.topk <= 1:
            raise ValueError("aai needs steps >= 1 and 0 < topk <= 1")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        alpha = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        ball = LinfBall(self.eps)
        with torch.no_grad():
            pred = model(x).argmax(1)
            cam0 = cam_maps(model, x, y).flatten(1)
        k = max(1, round(self.topk * cam0.shape[1]))
        top = cam0.topk(k, dim=1).indices
        best_x, best_mass = x.clone(), torch.full_like(y, float("inf"), dtype=x.dtype)
        delta = torch.zeros_like(x)
        for t in range(self.steps + 1):
            x_adv = (x + delta).requires_grad_(True)
            mass = topk_mass(cam_maps(model, x_adv, y), top)
            with torch.no_grad():
                keep = (model(x_adv).argmax(1) == pred) & (mass < best_mass)
                best_x = torch.where(keep[:, None, None, None], x_adv.detach(), best_x)
                best_mass = torch.where(keep, mass.detach(), best_mass)
            if t == self.steps:
                break
            (grad,) = torch.autograd.grad(mass.sum(), x_adv)
            delta = ball.project(x, ball.step(delta, -grad, alpha))
        return best_x.clamp(0, 1)

    @torch.no_grad()
    def example_metrics(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                        y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kendall_tau`` per example between clean and attacked true-class CAMs.

        NaN where the prediction changed (excluded) or the map is constant.
        """
        same = model(x).argmax(1) == model(x_adv).argmax(1)
        tau = kendall_tau(cam_maps(model, x, y), cam_maps(model, x_adv, y))
        return {"kendall_tau": torch.where(same, tau, torch.full_like(tau, float("nan")))}

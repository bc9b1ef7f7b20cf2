"""Interpretability sneaking attack (ISA), paper 004 (Boopathy et al. 2020), Eq. 6."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.attacks.cam_maps import kendall_tau, logits_and_cam_maps
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


def runner_up(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class other than ``y`` (the ISA target y')."""
    return logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).argmax(1)


def discrepancy_l1(cam_x: tuple[torch.Tensor, torch.Tensor],
                   cam_adv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """l1 2-class interpretation discrepancy ``D_{2,l1}`` (paper 004, Eq. 4), per example.

    Args:
        cam_x: CAMs ``(I(x, y), I(x, y'))``; cam_adv: ``(I(x', y), I(x', y'))``.

    Shape:
        each map ``[N, h, w]``; returns ``[N]``.
    """
    d_y = (cam_x[0] - cam_adv[0]).abs().flatten(1).sum(1)
    d_t = (cam_x[1] - cam_adv[1]).abs().flatten(1).sum(1)
    return 0.5 * (d_y + d_t)


def target_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``max_{j != y'} f_j - f_{y'}`` per example (negative: classified as ``target``)."""
    others = logits.masked_fill(F.one_hot(target, logits.shape[1]).bool(), float("-inf"))
    return others.amax(1) - logits.gather(1, target[:, None]).squeeze(1)


@ATTACKS.register("isa")
@dataclass(frozen=True)
class ISA(Attack):
    """Targeted attack that also minimises the CAM discrepancy it causes (Eq. 6).

    minimise ``lam * max(max_{j != y'} f_j - f_{y'}, -kappa) + D_{2,l1}(x, x + delta)``
    over ``||delta||_inf <= eps`` by signed PGD, with y' the clean runner-up class and a
    per-example bisection on ``lam`` (the paper's: lower ``lam`` while the attack still
    succeeds). Returns, per example, the successful iterate with the lowest discrepancy,
    else the last iterate of the largest ``lam`` tried. :meth:`example_metrics` gives
    ``isa_success`` and, over successful examples (NaN elsewhere), ``discrepancy_l1``
    and Kendall's tau of the true-class and target-class CAMs, clean vs attacked.

    The CAMs (discrepancy and tau) are at the network's feature-map resolution, as the
    public code's ``conv(features, W)``; a defence that wraps a network behind
    ``purify`` is interpreted by the inner network's CAM of ``purify(x)``, and every
    step takes the logits and both CAMs from one pass
    (:func:`pipeline.attacks.cam_maps.logits_and_cam_maps`).

    Args:
        eps: l-inf budget.
        steps: PGD steps per value of ``lam``.
        step_size: ``None`` -> ``2.5 * eps / steps``.
        lam: initial ``lam``; doubled until the attack succeeds, then bisected.
        bisection: number of ``lam`` values tried.
        kappa: margin tolerance of a successful attack (the paper's tau, 0.1).
        bn_mode: BatchNorm mode.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    steps: int = 20
    step_size: float | None = budget_field(None)
    lam: float = 1.0
    bisection: int = 4
    kappa: float = 0.1
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.steps < 1 or self.bisection < 1 or self.lam <= 0:
            raise ValueError("isa needs steps >= 1, bisection >= 1 and lam > 0")

    def _targets(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return runner_up(model(x), y)

    def _run(self, model, x, y, target, lam, cam_x):
        """PGD at fixed per-example ``lam``; the lowest-D successful iterate and the last."""
        alpha = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        ball = LinfBall(self.eps)
        delta = torch.zeros_like(x)
        best_x, best_d = x.clone(), torch.full_like(lam, float("inf"))
        for t in range(self.steps + 1):
            x_adv = (x + delta).requires_grad_(True)
            # one pass: logits and both CAMs (one purify step for a wrapped defence)
            logits, cam_adv = logits_and_cam_maps(model, x_adv, y, target)
            margin = target_margin(logits, target)
            d = discrepancy_l1(cam_x, cam_adv)
            with torch.no_grad():
                ok = (margin <= -self.kappa) & (d < best_d)
                best_x = torch.where(ok[:, None, None, None], x_adv.detach(), best_x)
                best_d = torch.where(ok, d.detach(), best_d)
            if t == self.steps:
                break
            loss = (lam * margin.clamp_min(-self.kappa) + d).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            delta = ball.project(x, ball.step(delta, -grad, alpha))
        return best_x, best_d, (x + delta).detach()

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = self._targets(model, x, y)
        with torch.no_grad():
            cam_x = tuple(logits_and_cam_maps(model, x, y, target)[1])
        lam = torch.full((x.shape[0],), float(self.lam), device=x.device)
        lo, hi = torch.zeros_like(lam), torch.full_like(lam, float("inf"))
        out, out_d = x.clone(), torch.full_like(lam, float("inf"))
        fallback, fallback_lam = x.clone(), torch.zeros_like(lam)
        for _ in range(self.bisection):
            cand, cand_d, last = self._run(model, x, y, target, lam, cam_x)
            success = torch.isfinite(cand_d)
            better = success & (cand_d < out_d)
            out = torch.where(better[:, None, None, None], cand, out)
            out_d = torch.where(better, cand_d, out_d)
            bigger = ~success & (lam > fallback_lam)
            fallback = torch.where(bigger[:, None, None, None], last, fallback)
            fallback_lam = torch.where(bigger, lam, fallback_lam)
            hi = torch.where(success, lam, hi)
            lo = torch.where(success, lo, lam)
            lam = torch.where(torch.isinf(hi), 2 * lam, (lo + hi) / 2)
        found = torch.isfinite(out_d)
        return torch.where(found[:, None, None, None], out, fallback).clamp(0, 1)

    @torch.no_grad()
    def example_metrics(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                        y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``isa_success`` (0/1) and, NaN where it failed, ``discrepancy_l1``,
        ``kendall_tau_true`` and ``kendall_tau_target``."""
        target = self._targets(model, x, y)
        _, cam_x = logits_and_cam_maps(model, x, y, target)
        logits, cam_adv = logits_and_cam_maps(model, x_adv, y, target)
        success = target_margin(logits, target) <= 0
        nan = torch.full(success.shape, float("nan"), dtype=torch.float64, device=x.device)

        def masked(v):
            return torch.where(success, v.double(), nan)

        return {
            "isa_success": success.double(),
            "discrepancy_l1": masked(discrepancy_l1(cam_x, cam_adv)),
            "kendall_tau_true": masked(kendall_tau(cam_x[0], cam_adv[0])),
            "kendall_tau_target": masked(kendall_tau(cam_x[1], cam_adv[1])),
        }

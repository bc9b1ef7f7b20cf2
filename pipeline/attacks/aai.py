"""Attack against interpretability (AAI): the CAM top-k attack (Ghorbani et al. 2019),
as paper 004 (Boopathy et al. 2020, Sec. 5.2, Table 3) runs it in its public code
(AkhilanB/Proper-Interpretability, ``eval.py``, ``aai_topk``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.attacks.cam_maps import cam_maps, kendall_tau, logits_and_cam_maps
from pipeline.attacks.threat import LinfBall
from pipeline.config import budget_field


@ATTACKS.register("aai")
@dataclass(frozen=True)
class AAI(Attack):
    """Lower the true-class CAM at its clean top-k positions; tau of clean vs attacked CAM.

    As ``aai_topk``: uniform random start in the l-inf ball, then ``steps`` signed steps
    descending ``sum_{p in top-k(CAM(x, y))} CAM(x', y)[p]`` (the raw CAM, no
    normalisation), projected to the ball and [0, 1]; the last iterate is returned (the
    prediction is not constrained). :meth:`example_metrics` gives Kendall's tau between
    the clean and the attacked true-class CAM, NaN where the model's prediction on
    ``x_adv`` differs from that on ``x`` (the reference averages over the others only;
    the evaluation reports the excluded fraction). The CAM of a defence that wraps a
    network behind ``purify`` is the inner network's CAM of ``purify(x)``
    (:mod:`pipeline.attacks.cam_maps`).

    Resolution: top-k and tau are taken on the CAM at the network's feature-map
    resolution (``cam_size=None``), as the reference, which ranks ``conv(features, W)``
    unresized. Upsampling would add no information (interpolated values are fixed by
    the feature map) but would add pairs whose order the interpolation sets. The
    reference's networks have total stride 4, so its CIFAR CAM is 8 x 8 and k = 8 is
    1/8 of the map: ``topk`` is that share, giving k = 8 on our 8 x 8 maps (small_cnn,
    wrn34_10 on CIFAR; exactly the reference's setting) and k = 2 on the 4 x 4 maps of
    the stride-8 ResNets, whose tau then runs over 16 positions instead of 64.
    ``cam_size=8`` resizes (bilinearly) to the reference's 8 x 8 geometry instead.

    Args:
        eps: l-inf budget.
        steps: signed steps (reference: 200).
        step_size: per-step l-inf move in [0, 1] pixels (reference: 0.01; its inputs are
            in [0, 1], CIFAR as ``uint8 / 255``, so 0.01 = 2.55/255 here); ``None`` ->
            ``2.5 * eps / steps``.
        random_start: start from U(-eps, eps) noise projected to [0, 1] (reference: yes).
        topk: share of CAM positions in the top-k set, in (0, 1] (reference: 8 of 8 x 8).
        cam_size: side the CAM is bilinearly resized to before top-k and tau; ``None``
            keeps the feature map's.
        bn_mode: BatchNorm mode.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    steps: int = 200
    step_size: float | None = budget_field(0.01)
    random_start: bool = True
    topk: float = 0.125
    cam_size: int | None = None
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.steps < 1 or not 0 < self.topk <= 1:
            raise ValueError("aai needs steps >= 1 and 0 < topk <= 1")
        if self.cam_size is not None and self.cam_size < 1:
            raise ValueError("aai needs cam_size >= 1 (or None)")

    def resize(self, cam: torch.Tensor) -> torch.Tensor:
        """``cam`` ``[N, h, w]`` at the measured resolution (``cam_size``, or as is)."""
        size = self.cam_size
        if size is None or tuple(cam.shape[-2:]) == (size, size):
            return cam
        return F.interpolate(cam[:, None], size=(size, size), mode="bilinear",
                             align_corners=False)[:, 0]

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        alpha = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        ball = LinfBall(self.eps)
        with torch.no_grad():
            cam0 = self.resize(cam_maps(model, x, y)).flatten(1)
        k = max(1, round(self.topk * cam0.shape[1]))
        top = cam0.topk(k, dim=1).indices
        delta = (ball.random_start(x, u=self.uniform(x)) if self.random_start
                 else torch.zeros_like(x))
        for _ in range(self.steps):
            x_adv = (x + delta).requires_grad_(True)
            top_sum = self.resize(cam_maps(model, x_adv, y)).flatten(1).gather(1, top).sum()
            (grad,) = torch.autograd.grad(top_sum, x_adv)
            delta = ball.project(x, ball.step(delta, -grad, alpha))
        return (x + delta).clamp(0, 1)

    @torch.no_grad()
    def example_metrics(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                        y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kendall_tau`` per example between clean and attacked true-class CAMs.

        NaN where the prediction changed (excluded) or the map is constant.
        """
        logits, (cam,) = logits_and_cam_maps(model, x, y)
        logits_adv, (cam_adv,) = logits_and_cam_maps(model, x_adv, y)
        same = logits.argmax(1) == logits_adv.argmax(1)
        tau = kendall_tau(self.resize(cam), self.resize(cam_adv))
        return {"kendall_tau": torch.where(same, tau, torch.full_like(tau, float("nan")))}

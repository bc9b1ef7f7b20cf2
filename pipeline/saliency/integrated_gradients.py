"""Integrated Gradients (Sundararajan et al. 2017), batched over path points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, auto_batch, target_logit_grad


def path_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Alphas in [0, 1] and quadrature weights (sum 1) of the path integral."""
    if method == "gausslegendre":  # as Captum's default
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0, 1, steps), w
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    raise ValueError(f"unknown integration method {method!r}")


@SALIENCY.register("ig")
@dataclass(frozen=True)
class IntegratedGradients(SaliencyMethod):
    """``(x - b) * integral_0^1 d logit_t(b + a (x - b)) / dx da`` of the target logit.

    Completeness: the attributions of an image sum to ``f_t(x) - f_t(b)`` up to the
    quadrature error. The ``steps * N`` path points go through the model in chunks of
    ``internal_batch_size`` images (None: 64 on CPU, 1024 on GPU; the chunking changes
    speed, not the result).

    Args:
        steps: path points.
        baseline: ``black`` (the all-zero image; "zero" baseline) or ``uniform``
            (U[0,1] noise from a CPU generator seeded with ``seed``).
        method: quadrature: ``gausslegendre`` (Captum's default), ``riemann_trapezoid``
            or ``riemann_middle``.
        internal_batch_size: images per forward/backward (None: by device).
        seed: seed of the uniform baseline.
    """

    steps: int = 50
    baseline: Literal["black", "uniform"] = "black"
    method: Literal["gausslegendre", "riemann_trapezoid", "riemann_middle"] = "gausslegendre"
    internal_batch_size: int | None = None
    seed: int = 0

    per_image = False  # the uniform baseline is drawn for the whole batch

    def __post_init__(self):
        ibs = self.internal_batch_size
        if self.steps < 1 or (ibs is not None and ibs < 1):
            raise ValueError("ig needs steps >= 1 and internal_batch_size >= 1")

    def baseline_for(self, x: torch.Tensor) -> torch.Tensor:
        """The baseline image(s) for ``x``, same shape and device."""
        if self.baseline == "black":
            return torch.zeros_like(x)
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(x.shape, generator=gen).to(x.device, x.dtype)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alphas, weights = path_points(self.steps, self.method)
        base = self.baseline_for(x)
        delta = x - base
        n = x.shape[0]
        chunk = self.internal_batch_size or auto_batch(x.device)
        per_call = max(1, chunk // n)
        total = torch.zeros_like(x)
        for start in range(0, self.steps, per_call):
            a = torch.as_tensor(alphas[start:start + per_call], dtype=x.dtype, device=x.device)
            w = torch.as_tensor(weights[start:start + per_call], dtype=x.dtype, device=x.device)
            shape = (len(a),) + (1,) * x.dim()
            points = (base[None] + a.view(shape) * delta[None]).reshape(-1, *x.shape[1:])
            targets = target.repeat(len(a))
            grads = torch.cat([  # more than `chunk` images when n > chunk
                target_logit_grad(model, p, t)
                for p, t in zip(points.split(chunk), targets.split(chunk))
            ])
            total += (grads.view(len(a), *x.shape) * w.view(shape)).sum(0)
        return delta * total

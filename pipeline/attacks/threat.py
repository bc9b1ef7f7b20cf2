"""Threat models as small objects with ``random_start``, ``step`` and ``project``
(the MadryLab ``robustness`` attack-steps pattern). PGD is written once against them."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinfBall:
    """The l-inf ball of radius ``eps`` around x, intersected with the pixel box [0, 1].

    ``mask`` (optional, broadcastable to x, values in [0, 1]) multiplies every
    perturbation: ``delta' = delta * mask``. SIP-AT uses ``mask = 1 - M``.
    """

    eps: float
    mask: torch.Tensor | None = None

    def _masked(self, delta: torch.Tensor) -> torch.Tensor:
        return delta if self.mask is None else delta * self.mask

    def random_start(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        u: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Uniform noise in the ball (projected into the pixel box).

        Args:
            x: the clean images.
            generator: CPU generator for the draw (ignored when ``u`` is given).
            u: U[0, 1) noise shaped like x, drawn by the caller (per-example streams).
        """
        if u is None:
            u = torch.rand(x.shape, generator=generator, device="cpu" if generator else x.device)
        delta = (2 * u.to(x.device, x.dtype) - 1) * self.eps
        return self.project(x, delta)

    def step(self, delta: torch.Tensor, grad: torch.Tensor, step_size: float) -> torch.Tensor:
        """Steepest ascent for l-inf: ``delta + step_size * sign(grad)``."""
        return delta + step_size * grad.sign()

    def project(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Into the ball, the mask and [0, 1]."""
        delta = self._masked(delta.clamp(-self.eps, self.eps))
        return (x + delta).clamp(0, 1) - x

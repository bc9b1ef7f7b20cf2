"""SmoothGrad (Smilkov et al. 2017) as a wrapper over any registered method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.config import build_method
from pipeline.saliency import SALIENCY
from pipeline.saliency.base import SaliencyMethod, auto_batch


@SALIENCY.register("smoothgrad")
@dataclass(frozen=True)
class SmoothGrad(SaliencyMethod):
    """Mean of ``base`` over ``samples`` noisy copies ``x + N(0, (sigma * range)^2)``.

    ``range`` is each image's own max - min (Smilkov et al.; SAT's code), noise is not
    clipped. Noise comes from a CPU generator seeded with ``seed`` and drawn in a fixed
    order (sample by sample for the whole batch), so the result does not depend on the
    device or on ``batch_size``. ``sigma = 0`` returns the base method's map itself.

    Args:
        base: registered name of the wrapped method (``grad``, ``gbp``, ...).
        base_params: its hyperparameters.
        sigma: noise level as a fraction of the image's range (0.15 as SAT's code).
        samples: number of noisy copies (10 as SAT's code).
        seed: noise seed.
        batch_size: noisy images per call of the base method (None: by device, 64 on
            CPU, 1024 on GPU; speed only).
    """

    base: str = "grad"
    base_params: dict[str, Any] = field(default_factory=dict, hash=False)
    sigma: float = 0.15
    samples: int = 10
    seed: int = 0
    batch_size: int | None = None

    per_image = False  # the noise is drawn for the whole batch

    def __post_init__(self):

        if self.base == "smoothgrad":
            raise ValueError("smoothgrad cannot wrap itself")
        bad_batch = self.batch_size is not None and self.batch_size < 1
        if self.sigma < 0 or self.samples < 1 or bad_batch:
            raise ValueError("smoothgrad needs sigma >= 0, samples >= 1, batch_size >= 1")
        method = build_method(SALIENCY, self.base, dict(self.base_params), "smoothgrad.base")
        object.__setattr__(self, "_method", method)

    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base: SaliencyMethod = self._method
        if self.sigma == 0:
            return base.attribute(model, x, target)
        n = x.shape[0]
        flat = x.reshape(n, -1)
        scale = (self.sigma * (flat.amax(1) - flat.amin(1))).view(n, *[1] * (x.dim() - 1))
        gen = torch.Generator().manual_seed(self.seed)
        per_call = max(1, (self.batch_size or auto_batch(x.device)) // n)
        total = torch.zeros_like(x)
        for start in range(0, self.samples, per_call):
            k = min(per_call, self.samples - start)
            noise = torch.randn((k, *x.shape), generator=gen).to(x.device, x.dtype)
            noisy = (x[None] + noise * scale[None]).reshape(k * n, *x.shape[1:])
            attr = base.attribute(model, noisy, target.repeat(k))
            total += attr.view(k, *x.shape).sum(0)
        return total / self.samples

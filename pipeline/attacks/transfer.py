"""Transfer attack: adversarial examples crafted on a source checkpoint, applied to the target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.config import budget_field, build_method


@ATTACKS.register("transfer")
@dataclass(frozen=True)
class Transfer(Attack):
    """Craft with ``attack`` on the ``source`` checkpoint, return those images for the target.

    The target model is never queried while crafting (a black-box transfer attack;
    Carlini et al. 2019 ask for one). The evaluation stage fills ``source`` from
    ``salpipe evaluate --source-model DIR`` when a preset leaves it empty, and hands the
    loaded model in as ``source_model`` (an attack loads no checkpoint itself).

    Args:
        eps: l-inf budget (passed to the inner attack).
        source: run directory (or ``model.pt``) of the source model: what the results
            record; the evaluation stage loads it.
        source_model: the loaded source model (not part of the attack's identity).
        attack: inner attack name from ``ATTACKS`` (``pgd``).
        attack_params: the inner attack's parameters (``eps`` is set from ``eps``).
        bn_mode: BatchNorm mode of the source model while crafting.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    source: str = ""
    attack: str = "pgd"
    attack_params: dict[str, Any] = field(default_factory=dict)
    bn_mode: str = "eval"
    source_model: nn.Module | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.attack == "transfer":
            raise ValueError("transfer: the inner attack cannot be transfer itself")
        ATTACKS.get(self.attack)

    def inner(self) -> Attack:
        """The attack run on the source model."""
        params = {**self.attack_params, "eps": self.eps}
        return build_method(ATTACKS, self.attack, params, "transfer.attack")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.source_model is None:
            raise ValueError(
                "transfer attack has no source model: set params.source or pass "
                "--source-model DIR to salpipe evaluate"
            )
        src = self.source_model.to(x.device)
        # The inner call reuses this call's random streams (same seed, same indices).
        return self.inner().perturb_with_mode(src, x, y)

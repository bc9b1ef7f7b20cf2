"""Transfer attack: adversarial examples crafted on a source checkpoint, applied to the target."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.config import budget_field, build_method

# The source a transfer entry crafts on when it names none (``salpipe evaluate
# --source-model DIR`` without a name gives this one).
DEFAULT_SOURCE = "default"
SOURCE_NAME = re.compile(r"^[a-z0-9_]+$")


def source_name_of(params: Mapping[str, Any]) -> str:
    """The name of the source a transfer entry's ``params`` craft on (``source_name``,
    else :data:`DEFAULT_SOURCE`)."""
    return str(params.get("source_name", DEFAULT_SOURCE))


@ATTACKS.register("transfer")
@dataclass(frozen=True)
class Transfer(Attack):
    """Craft with ``attack`` on a source model, return those images for the target.

    The target model is never queried while crafting (a black-box transfer attack;
    Carlini et al. 2019 ask for one). An evaluation may hold several source models, each
    under a name (``salpipe evaluate --source-model NAME=DIR``, repeatable; a bare
    ``DIR`` is the source ``default``); an entry crafts on the one named
    ``source_name``. The evaluation stage loads them (an attack loads no checkpoint
    itself) and hands them in as ``source_models``; a preset entry may name a run
    directory of its own in ``source``, used when no ``--source-model`` of its name is
    given.

    Args:
        eps: l-inf budget (passed to the inner attack).
        source_name: which of the evaluation's source models to craft on
            (``[a-z0-9_]+``; default ``default``). In the DAG, ``base`` is a SAD model's
            own undefended base student (the job's seed) and ``other_seed`` that student
            trained with the sweep's ``transfer_seed``; other names come from the
            sweep's ``transfer`` mapping.
        source: run directory (or ``model.pt``) of the source model, when the preset
            names one itself; the evaluation stage loads it.
        attack: inner attack name from ``ATTACKS`` (``pgd``).
        attack_params: the inner attack's parameters (``eps`` is set from ``eps``).
        bn_mode: BatchNorm mode of the source model while crafting.
        source_model: the loaded source model; wins over ``source_models`` (not part of
            the attack's identity).
        source_models: the evaluation's loaded source models by name (not part of the
            attack's identity).

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    eps: float = budget_field(8 / 255)
    source_name: str = DEFAULT_SOURCE
    source: str = ""
    attack: str = "pgd"
    attack_params: dict[str, Any] = field(default_factory=dict)
    bn_mode: str = "eval"
    source_model: nn.Module | None = field(default=None, compare=False, repr=False)
    source_models: Mapping[str, nn.Module] | None = field(default=None, compare=False,
                                                          repr=False)

    def __post_init__(self):
        if self.attack == "transfer":
            raise ValueError("transfer: the inner attack cannot be transfer itself")
        if not SOURCE_NAME.match(str(self.source_name)):
            raise ValueError(f"transfer: source_name {self.source_name!r} must match "
                             "[a-z0-9_]+ (it is the NAME of --source-model NAME=DIR)")
        ATTACKS.get(self.attack)

    def inner(self) -> Attack:
        """The attack run on the source model."""
        params = {**self.attack_params, "eps": self.eps}
        return build_method(ATTACKS, self.attack, params, "transfer.attack")

    def network(self) -> nn.Module | None:
        """The model this attack crafts on: ``source_model``, else its name's entry of
        ``source_models`` (None when neither is there)."""
        if self.source_model is not None:
            return self.source_model
        return (self.source_models or {}).get(self.source_name)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        src = self.network()
        if src is None:
            raise ValueError(
                f"transfer attack has no source model {self.source_name!r}: set "
                f"params.source or pass --source-model {self.source_name}=DIR to "
                "salpipe evaluate")
        src = src.to(x.device)
        # The inner call reuses this call's random streams (same seed, same indices).
        return self.inner().perturb_with_mode(src, x, y)

"""AutoAttack (Croce & Hein 2020), the official implementation (``pyautoattack==0.2.0``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack, raise_flag
from pipeline.attacks.square import import_autoattack, reset_dynamic_check, rng_devices
from pipeline.config import budget_field

VERSIONS = ("standard", "rand", "plus", "custom")
AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


class _FlagHandler(logging.Handler):
    """Turns AutoAttack's logged warnings (its ``checks.py`` flags) into result flags."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            raise_flag(f"autoattack: {record.getMessage()}")


@ATTACKS.register("autoattack")
@dataclass(frozen=True)
class AutoAttackLinf(Attack):
    """Official AutoAttack under l-inf, run on the batch it is given.

    ``standard``: APGD-CE, APGD-T, FAB-T, Square (deterministic models); ``rand``:
    APGD-CE and APGD-DLR with 20 EOT iterations (randomised defences); ``custom``
    runs the listed ``attacks`` only (e.g. ``[apgd-ce]`` for quick checks).

    Its checks (randomised defence, probabilities instead of logits, zero gradients,
    "dynamic defense" = optimisation at inference time, Square beating the white-box
    attacks) are logged by the library; they become flags of the result rows.

    Args:
        eps: l-inf budget.
        version: ``standard``, ``rand``, ``plus`` or ``custom``.
        attacks: with ``custom``, the AutoAttack attack names to run.
        batch_size: AutoAttack's internal batch size.
        steps: iterations of each APGD attack (None: the library's 100).
        restarts: restarts of each APGD attack (None: the version's; ``custom`` runs
            APGD-CE with the library's 5).
        n_target_classes: target classes of APGD-T (None: the library's 9).
        bn_mode: BatchNorm mode (keep ``eval``).

    The library seeds the global torch RNG with the call's ``seed`` (restored after).

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    per_batch_rng = True  # the protocol runs it on fixed blocks of dataset indices

    eps: float = budget_field(8 / 255)
    version: str = "standard"
    attacks: tuple[str, ...] = ()
    batch_size: int = 500
    steps: int | None = None
    restarts: int | None = None
    n_target_classes: int | None = None
    bn_mode: str = "eval"

    def __post_init__(self):
        for name in ("steps", "restarts", "n_target_classes"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"autoattack {name} must be >= 1, got {v}")
        if self.version not in VERSIONS:
            raise ValueError(f"autoattack version must be one of {VERSIONS}, not {self.version!r}")
        bad = [a for a in self.attacks if a not in AA_ATTACKS]
        if bad:
            raise ValueError(f"autoattack attacks {bad} unknown; known: {', '.join(AA_ATTACKS)}")
        if (self.version == "custom") != bool(self.attacks):
            raise ValueError("autoattack: give attacks exactly when version is 'custom'")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        aa = import_autoattack()
        adversary = aa.AutoAttack(
            model, eps=self.eps, norm="Linf", version=self.version, seed=self.call_seed(),
            device=x.device, attacks=list(self.attacks) if self.attacks else None,
        )
        adversary.verbose = False
        for apgd in (adversary.apgd, adversary.apgd_targeted):
            if self.steps is not None:
                apgd.n_iter = int(self.steps)
            if self.restarts is not None:
                apgd.n_restarts = int(self.restarts)
        if self.n_target_classes is not None:
            adversary.apgd_targeted.n_target_classes = int(self.n_target_classes)
        reset_dynamic_check(aa)
        handler = _FlagHandler()
        aa_logger = logging.getLogger("auto-attack")
        aa_logger.addHandler(handler)
        try:
            with torch.random.fork_rng(devices=rng_devices(x)):
                x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=self.batch_size)
        finally:
            aa_logger.removeHandler(handler)
        return torch.min(torch.max(x_adv.to(x.device), x - self.eps), x + self.eps).clamp(0, 1)

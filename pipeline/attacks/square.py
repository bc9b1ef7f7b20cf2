"""Square attack, l-inf (Andriushchenko et al. 2020): score-based, no gradients.

Runs the official implementation shipped with AutoAttack (``pyautoattack``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.attacks import ATTACKS
from pipeline.attacks.base import Attack
from pipeline.config import budget_field


def import_autoattack():
    """The AutoAttack package: ``pyautoattack`` (PyPI 0.2.0) or the GitHub ``autoattack``."""
    # local: which of the two names is installed is only known by trying them
    try:
        import pyautoattack as aa
        import pyautoattack.checks
        import pyautoattack.square  # noqa: F401
    except ImportError:  # the GitHub install names the package ``autoattack``
        import autoattack as aa
        import autoattack.checks
        import autoattack.square
    return aa


def reset_dynamic_check(aa) -> None:
    """Zero AutoAttack's global call counter of its "dynamic defense" check.

    ``checks.check_dynamic`` counts calls to ``grad``/``backward`` in a module-level
    dict that is never reset, so once one model tripped it every later check in the
    process would flag too.
    """
    for k in aa.checks.funcs:
        aa.checks.funcs[k] = 0


def rng_devices(x: torch.Tensor) -> list:
    """Devices whose RNG state a library call may reseed (restored by ``fork_rng``)."""
    return [x.device] if x.device.type == "cuda" else []


@ATTACKS.register("square")
@dataclass(frozen=True)
class Square(Attack):
    """The Square attack (margin loss), as in AutoAttack.

    Black-box: queries logits only, so gradient masking does not hide robustness from
    it; AutoAttack treats Square beating the white-box attacks as a warning sign.

    Args:
        eps: l-inf budget.
        queries: query budget per restart (AutoAttack: 5000).
        restarts: independent restarts.
        p_init: initial fraction of pixels per square (AutoAttack: 0.8).
        rescale_schedule: adapt the square-size schedule to ``queries`` (use False at
            5000 queries to match AutoAttack exactly).
        bn_mode: BatchNorm mode.

    The library seeds the global torch RNG with the call's ``seed`` (restored after);
    its draws are per batch, not per example.

    Shape:
        x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns ``[N, C, H, W]``.
    """

    per_batch_rng = True  # the protocol runs it on fixed blocks of dataset indices

    eps: float = budget_field(8 / 255)
    queries: int = 5000
    restarts: int = 1
    p_init: float = 0.8
    rescale_schedule: bool = True
    bn_mode: str = "eval"

    def __post_init__(self):
        if self.queries < 1 or self.restarts < 1:
            raise ValueError("square needs queries >= 1 and restarts >= 1")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attack = import_autoattack().square.SquareAttack(
            model, norm="Linf", n_queries=self.queries, eps=self.eps, p_init=self.p_init,
            n_restarts=self.restarts, seed=self.call_seed(), verbose=False,
            loss="margin", resc_schedule=self.rescale_schedule, device=x.device,
        )
        with torch.random.fork_rng(devices=rng_devices(x)), torch.no_grad():
            x_adv = attack.perturb(x, y)
        # The library's projection is exact up to float error; clamp to be safe.
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp(0, 1)

"""Attack registry. An attack is ``__call__(model, x, y) -> x_adv`` inside its threat set and [0, 1].

Metric-producing attacks (``aai``, ``isa``) also define
``example_metrics(model, x, x_adv, y) -> {name: Tensor[N]}`` (NaN = excluded example).
"""

from pipeline.core.registry import Registry

ATTACKS = Registry("attack")

from pipeline.attacks import (  # noqa: F401  (registers)
    aai,
    autoattack,
    eot_pgd,
    fgsm,
    isa,
    pgd,
    saliency_attack,
    square,
    trades_kl,
    transfer,
    uniform_noise,
)
from pipeline.attacks.base import Attack, collect_flags, raise_flag
from pipeline.attacks.threat import LinfBall

__all__ = ["ATTACKS", "Attack", "LinfBall", "collect_flags", "raise_flag"]

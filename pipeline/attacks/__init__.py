"""Attack registry. An attack is ``__call__(model, x, y) -> x_adv`` inside its threat set and [0, 1]."""

from pipeline.registry import Registry

ATTACKS = Registry("attack")

from pipeline.attacks import pgd  # noqa: E402,F401  (registers)
from pipeline.attacks.base import Attack  # noqa: E402
from pipeline.attacks.threat import LinfBall  # noqa: E402

__all__ = ["ATTACKS", "Attack", "LinfBall"]

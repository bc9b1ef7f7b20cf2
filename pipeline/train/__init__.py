"""Training methods, registered by name; one loop (``loop.py``) trains with any of them."""

from pipeline.core.registry import Registry

TRAINING = Registry("training method")

from pipeline.train import (  # noqa: F401  (registers)
    fat,
    int_family,
    part,
    pgd_at,
    pgd_at_uniform,
    pgd_sat,
    sat,
    sip_at,
    standard,
    trades,
    trades_sat,
    trades_uniform,
    uniform_noise,
)
from pipeline.train.method import Batch, Loss, StepContext, TrainingMethod

__all__ = ["TRAINING", "Batch", "Loss", "StepContext", "TrainingMethod"]

"""Training methods, registered by name; one loop (``loop.py``) trains with any of them."""

from pipeline.registry import Registry

TRAINING = Registry("training method")

from pipeline.train import (  # noqa: F401  (registers)
    pgd_at,
    pgd_at_uniform,
    standard,
    trades,
    trades_uniform,
    uniform_noise,
)
from pipeline.train.method import Batch, StepContext, TrainingMethod

__all__ = ["TRAINING", "Batch", "StepContext", "TrainingMethod"]
from pipeline.train import sat, pgd_sat, trades_sat, sip_at, int_family, fat, part  # noqa: F401, I001
import sys as _sys

# register the chunks/auto streams, unless pipeline.cache.stream is importing us half-way
# (then pipeline.train.stage imports them before any stream is built)
if hasattr(_sys.modules.get("pipeline.cache.stream"), "STREAMS") or \
        "pipeline.cache.stream" not in _sys.modules:
    from pipeline.cache import stream_chunks  # noqa: F401

"""Training methods, registered by name; one loop (``loop.py``) trains with any of them."""

from pipeline.registry import Registry

TRAINING = Registry("training method")

__all__ = ["TRAINING"]

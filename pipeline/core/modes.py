"""A module's train/eval mode for the duration of a block, restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def module_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``model.train(training)`` inside the block; the previous mode afterwards (also on
    an exception)."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def eval_mode(model: nn.Module) -> contextmanager:
    """Eval mode (running BatchNorm statistics, no dropout) for the duration of a block."""
    return module_mode(model, False)

"""The saliency contract and the bookkeeping every method shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

TARGETS = ("label", "pred")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration; the previous mode (and no hooks) afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def resolve_target(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, target: str) -> torch.Tensor:
    """The class whose saliency is taken: the true ``label`` or the model's ``pred``."""
    if target == "label":
        if y is None:
            raise ValueError("target 'label' needs labels")
        return y
    if target == "pred":
        with torch.no_grad(), eval_mode(model):
            return model(x).argmax(1)
    raise ValueError(f"saliency target must be one of {TARGETS}, not {target!r}")


class SaliencyMethod(ABC):
    """Base class: ``attribute`` wraps ``_attribute`` with eval mode and input bookkeeping.

    The call leaves ``model.training``, ``x.requires_grad`` and ``x.grad`` as they were,
    leaves no hooks, and does not accumulate parameter gradients.
    """

    def attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Saliency of class ``target[i]`` for image ``x[i]``.

        Shape:
            x: ``[N, C, H, W]``, target: ``[N]`` (long); returns ``[N, C, H, W]`` (float32).
        """
        if target.shape != (x.shape[0],):
            raise ValueError(f"target must have shape [{x.shape[0]}], got {tuple(target.shape)}")
        with eval_mode(model), torch.enable_grad():
            attr = self._attribute(model, x.detach().clone(), target.to(x.device))
        return attr.detach().float()

    @abstractmethod
    def _attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The method proper; ``x`` is a detached copy, model in eval mode, grad enabled."""


def target_logit_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d logit_target / d x for every image of the batch in one backward pass."""
    x = x.requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return grad

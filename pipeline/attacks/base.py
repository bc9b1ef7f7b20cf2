"""Attack base class: eval-mode BatchNorm while attacking, mode restored afterwards."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn
import torch.nn.functional as F

BN_MODES = ("eval", "train")


class Attack(ABC):
    """Base for attacks. Subclasses implement ``perturb(model, x, y)``.

    The model is an argument, never stored state, so one attack object serves many
    models. ``bn_mode`` says whether BatchNorm (and dropout) run in eval mode (the
    default, and the only sound choice for evaluation) or train mode while the attack
    runs; the model's previous mode is restored either way. Gradients are taken with
    respect to the input only; parameter ``.grad`` is left untouched.
    """

    bn_mode: str = "eval"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, not {self.bn_mode!r}")
        was_training = model.training
        model.train(self.bn_mode == "train")
        try:
            with torch.enable_grad():
                x_adv = self.perturb(model, x.detach(), y.detach())
        finally:
            model.train(was_training)
        return x_adv.detach()

    @abstractmethod
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack proper, run with input gradients enabled and the BN mode set."""


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example C&W margin ``max_{j != y} z_j - z_y`` (larger = more adversarial)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return other.amax(1) - true


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross entropy."""
    return F.cross_entropy(logits, y, reduction="none")


LOSSES = {"ce": ce_loss, "cw": margin_loss}

"""Magnitude pruning of conv/linear weights to a target sparsity (sparse teachers).

The masks are plain 0/1 tensors keyed by parameter name; the training loop multiplies
them into the weights after every optimiser step, so pruned weights stay exactly zero
during fine-tuning while the state dict keeps its ordinary keys (no ``weight_orig``),
and a sparse checkpoint loads like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class PruneConfig:
    """How a sparse teacher is made.

    Args:
        sparsity: fraction of conv/linear weights set to zero (0.95).
        scope: ``global`` ranks all those weights together (one threshold; layers end up
            with different sparsities, the usual "global magnitude pruning"); ``layer``
            prunes every tensor to ``sparsity`` separately.
        finetune_epochs: epochs of masked fine-tuning; None = the training epochs.
    """

    sparsity: float = 0.95
    scope: Literal["global", "layer"] = "global"
    finetune_epochs: int | None = None

    def __post_init__(self):
        if not 0 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be global or layer, not {self.scope!r}")


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """``name -> weight`` of every Conv2d and Linear layer (biases and BN excluded)."""
    out = {}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            out[f"{mod_name}.weight" if mod_name else "weight"] = mod.weight
    return out


def _smallest_mask(values: torch.Tensor, sparsity: float) -> torch.Tensor:
    """0/1 mask zeroing exactly ``round(sparsity * n)`` smallest-|value| entries."""
    flat = values.abs().flatten()
    k = int(round(sparsity * flat.numel()))
    mask = torch.ones_like(flat)
    if k:
        # stable sort: ties broken by position, so the count is exact and reproducible
        mask[torch.argsort(flat, stable=True)[:k]] = 0
    return mask


def magnitude_masks(
    model: nn.Module, sparsity: float, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Masks (1 = kept) of the conv/linear weights by magnitude.

    Returns:
        ``{parameter name: float 0/1 tensor shaped like the weight}``.
    """
    weights = prunable(model)
    if scope == "layer":
        return {
            n: _smallest_mask(w.detach(), sparsity).view_as(w)
            for n, w in weights.items()
        }
    if scope != "global":
        raise ValueError(f"scope must be global or layer, not {scope!r}")
    flat = torch.cat([w.detach().flatten() for w in weights.values()])
    mask = _smallest_mask(flat, sparsity)
    out, i = {}, 0
    for n, w in weights.items():
        out[n] = mask[i : i + w.numel()].view_as(w).clone()
        i += w.numel()
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Multiply each masked parameter by its mask, in place."""
    params = dict(model.named_parameters())
    for n, m in masks.items():
        params[n].mul_(m.to(params[n].device, params[n].dtype))


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among the conv/linear weights."""
    weights = prunable(model).values()
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(sum(w.numel() for w in weights), 1)

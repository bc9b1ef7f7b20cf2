"""Magnitude pruning: exact sparsity, smallest weights removed, masks hold in training."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import build_model
from pipeline.models.prune import apply_masks, magnitude_masks, prunable, sparsity


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_exact_sparsity_and_magnitude_order(scope):
    model = build_model("resnet10", 10, width=8)
    masks = magnitude_masks(model, 0.95, scope)
    apply_masks(model, masks)
    weights = prunable(model)
    total = sum(w.numel() for w in weights.values())
    if scope == "global":
        assert sum(int((m == 0).sum()) for m in masks.values()) == round(0.95 * total)
        kept = torch.cat(
            [w[m.bool()] for w, m in zip(weights.values(), masks.values())]
        )
        assert kept.abs().min() > 0
    else:
        for w, m in zip(weights.values(), masks.values()):
            assert int((m == 0).sum()) == round(0.95 * w.numel())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert sparsity(model) == zeros / total  # exact: nothing else is zero
    assert abs(sparsity(model) - 0.95) * total <= len(weights) / 2


def test_pruned_are_the_smallest():
    model = build_model("small_cnn", 4, width=8)
    before = {n: w.detach().abs().clone() for n, w in prunable(model).items()}
    masks = magnitude_masks(model, 0.5, "global")
    allv = torch.cat([v.flatten() for v in before.values()])
    dropped = torch.cat([before[n][m == 0] for n, m in masks.items()])
    kept = torch.cat([before[n][m == 1] for n, m in masks.items()])
    assert dropped.max() <= kept.min()
    assert dropped.numel() == round(0.5 * allv.numel())

"""The recovery curve of paper 003 (Fig. 4)."""

from __future__ import annotations

import pytest
import torch

from pipeline.evaluate.saliency_metrics import recovery_curve
from pipeline.saliency import SALIENCY


def test_recovery_curve_shape_and_endpoints(small_model):
    x = torch.rand(6, 3, 16, 16)
    with torch.no_grad():
        y = small_model(x).argmax(1)
    curve = recovery_curve(small_model, x, y, SALIENCY.get("grad")(), fractions=(0.0, 0.1, 1.0))
    assert [f for f, _ in curve] == [0.0, 0.1, 1.0]
    assert curve[0][1] == 1.0  # nothing perturbed: the labels are the predictions
    with torch.no_grad():  # everything perturbed to black: the prediction on a black image
        black = (small_model(torch.zeros_like(x)).argmax(1) == y).float().mean().item()
    assert curve[-1][1] == pytest.approx(black)


def test_recovery_curve_rejects_bad_fill(small_model):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="fill"):
        recovery_curve(small_model, x, torch.tensor([0, 1]), SALIENCY.get("grad")(), fill="blur")

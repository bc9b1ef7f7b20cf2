"""Shared fixtures of the saliency tests."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import build_model


@pytest.fixture(scope="module")
def bn_resnet():
    """A narrow ResNet-10 in eval mode with non-trivial BN statistics, so the ReLUs
    gate differently per image and maps differ per image."""
    torch.manual_seed(0)
    model = build_model("resnet10", 10, width=8).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model

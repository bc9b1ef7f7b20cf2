"""Fixtures for the SAD tests: a tiny BN model, a smooth float64 model, a tiny store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


class SmoothNet(nn.Module):
    """conv -> BN -> softplus -> conv -> softplus -> mean -> linear: smooth in x.

    Its saliency is differentiable everywhere, so finite differences check double
    backprop (a ReLU net's gradient is piecewise constant: its Hessian terms vanish).
    """

    def __init__(self, classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        h = nn.functional.softplus(self.bn(self.conv1(x)))
        h = nn.functional.softplus(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))


@pytest.fixture
def smooth_net() -> nn.Module:
    torch.manual_seed(3)
    net = SmoothNet().double().eval()
    with torch.no_grad():  # non-trivial BN statistics
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture
def bn_model() -> nn.Module:
    """small_cnn width 8, 4 classes, with ``fc`` scaled so predictions vary."""
    from pipeline.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", 4, width=8)
    with torch.no_grad():
        model.fc.weight.mul_(10)
    return model.eval()


def write_store(path: Path, n_train: int = 48, n_test: int = 16, size: int = 16,
                classes: int = 4, seed: int = 0) -> Path:
    """A learnable toy store in the contract's layout (a bright quadrant per class)."""
    import zarr

    from pipeline.cache import layout

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w")
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, classes, n).astype(np.int16)
        x = rng.integers(0, 90, (n, 3, size, size)).astype(np.uint8)
        h = size // 2
        for i, k in enumerate(y):
            r, c = divmod(int(k) % 4, 2)
            x[i, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += 150
        root.create_array(layout.images_path(split), data=x, chunks=(16, 3, size, size))
        root.create_array(layout.labels_path(split), data=y, chunks=(16,))
        root[split].attrs.update({"n": n, "chunk": 16, "fingerprint": "e" * 64})
    root.attrs.update({
        "schema_version": layout.SCHEMA_VERSION, "dataset": "toy", "fingerprint": "f" * 64,
        "classes": [f"c{i}" for i in range(classes)], "num_classes": classes,
        "splits": ["train", "test"], "resolution": [size, size], "channels": 3,
        "mean": [0.5] * 3, "std": [0.25] * 3,
    })
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path / "toy.zarr")


@pytest.fixture
def checkpoint(tmp_path, bn_model) -> Path:
    from pipeline.models.checkpoint import save_checkpoint

    out = tmp_path / "small_std"
    save_checkpoint(out, bn_model, {
        "arch": "small_cnn", "width": 8, "num_classes": 4, "mean": [0.5] * 3,
        "std": [0.25] * 3, "dataset": "toy", "dataset_fingerprint": "f" * 64,
        "method": "standard", "params": {}, "train": {"seed": 0}, "epoch": 1,
    })
    return out

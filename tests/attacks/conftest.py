"""Fixtures of the attack tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def source_ckpt(tmp_path_factory):
    """A small_cnn checkpoint on disk (transfer attack source)."""
    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(3)
    model = build_model("small_cnn", 10, width=8)
    path = tmp_path_factory.mktemp("src") / "small_src"
    save_checkpoint(path, model, {"arch": "small_cnn", "width": 8, "num_classes": 10,
                                  "mean": [0.5] * 3, "std": [0.25] * 3})
    return path

"""Shared fixtures: seeding, tiny models and images, the shared real data sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state (captum's BaseTest does the same)."""
    from pipeline.core.seeds import seed_everything

    seed_everything(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real subsets); tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def images() -> torch.Tensor:
    """Four 3x16x16 images in [0, 1]."""
    return torch.rand(4, 3, 16, 16)


@pytest.fixture
def small_model() -> torch.nn.Module:
    """A narrow small CNN with 10 classes, in eval mode."""
    from pipeline.models import build_model

    return build_model("small_cnn", 10, width=8).eval()


@pytest.fixture
def linear_model() -> torch.nn.Module:
    """``logits = W x.flatten()`` for 3x4x4 inputs: closed-form gradients (rows of W)."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3, bias=True))

"""Fixtures for the evaluation tests: a tiny Zarr store and a tiny checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy_files import make_checkpoint, make_store


@pytest.fixture
def toy_store(tmp_path) -> Path:
    return make_store(tmp_path / "toy.zarr")


@pytest.fixture
def toy_ckpt(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "runs" / "small_std")

"""Tiny zarr stores written directly in the cache schema (contracts.md), for train tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_store import write_tiny_store


@pytest.fixture
def tiny_store(tmp_path) -> Path:
    return write_tiny_store(tmp_path / "tiny.zarr")

"""Fixtures of the cache tests: a tiny store and a tiny random-init teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
from salcache_helpers import make_store, make_teacher


@pytest.fixture
def store(tmp_path) -> str:
    return make_store(str(tmp_path / "toy.zarr"))


@pytest.fixture
def teacher(tmp_path) -> Path:
    return make_teacher(tmp_path / "teach_a")

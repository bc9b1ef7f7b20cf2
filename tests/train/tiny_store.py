"""A tiny prepared store for training tests (a module of its own, so tests import it by a
unique name instead of ``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def write_tiny_store(
    path: Path,
    n_train: int = 64,
    n_test: int = 32,
    size: int = 16,
    classes: int = 4,
    seed: int = 0,
    dataset: str = "tiny",
) -> Path:
    """A learnable toy data set: class k has a bright square in quadrant k, plus noise."""
    import zarr

    from pipeline.cache import layout

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w")
    digest = hashlib.sha256()
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, classes, n).astype(np.int16)
        x = rng.integers(0, 90, (n, 3, size, size)).astype(np.uint8)
        h = size // 2
        for i, k in enumerate(y):
            r, c = divmod(int(k) % 4, 2)
            x[i, int(k) % 3, r * h : (r + 1) * h, c * h : (c + 1) * h] += 150
        root.create_array(layout.images_path(split), data=x, chunks=(32, 3, size, size))
        root.create_array(layout.labels_path(split), data=y, chunks=(32,))
        digest.update(x.tobytes() + y.tobytes())
    root.attrs.update(
        {
            "schema_version": layout.SCHEMA_VERSION,
            "dataset": dataset,
            "classes": [f"c{i}" for i in range(classes)],
            "num_classes": classes,
            "fingerprint": digest.hexdigest(),
            "splits": ["train", "test"],
            "resolution": [size, size],
            "channels": 3,
            "mean": [0.3, 0.3, 0.3],
            "std": [0.25, 0.25, 0.25],
        }
    )
    return path

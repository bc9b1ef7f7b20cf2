"""Toy files for the evaluation and report tests: a Zarr store and a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def make_store(path: Path, n: int = 24, size: int = 16, classes: int = 4, seed: int = 0) -> Path:
    """A store with the contract's layout (``test`` split only), random images."""
    import zarr

    from pipeline.cache import layout

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({
        "schema_version": layout.SCHEMA_VERSION, "dataset": "toy", "fingerprint": "f" * 64,
        "classes": [f"c{i}" for i in range(classes)], "num_classes": classes,
        "splits": ["test"], "resolution": [size, size], "channels": 3,
        "mean": [0.5] * 3, "std": [0.25] * 3,
    })
    root.create_array(layout.images_path("test"), data=rng.integers(
        0, 256, (n, 3, size, size), dtype=np.uint8), chunks=(8, 3, size, size))
    root.create_array(layout.labels_path("test"), data=rng.integers(
        0, classes, n).astype(np.int16), chunks=(8,))
    root["test"].attrs.update({"n": n, "chunk": 8, "fingerprint": "e" * 64})
    return path


def make_checkpoint(path: Path, arch: str = "small_cnn", width: int = 8, classes: int = 4,
                    seed: int = 0, method: str = "standard") -> Path:
    """A checkpoint in the contract's format (random weights, ``fc`` scaled up so that the
    predictions vary between images)."""
    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = build_model(arch, classes, width=width)
    with torch.no_grad():
        model.fc.weight.mul_(20)
    save_checkpoint(path, model, {
        "arch": arch, "width": width, "num_classes": classes, "mean": [0.5] * 3,
        "std": [0.25] * 3, "dataset": "toy", "dataset_fingerprint": "f" * 64,
        "method": method, "params": {}, "train": {"seed": seed}, "epoch": 1,
    })
    return path

"""Tiny stores in the contracts.md layout and tiny teachers for the cache tests
(imported by name: tests/cache is on sys.path; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from pipeline.cache import layout
from pipeline.cache.bits import pack_bits

N, C, H, W, CHUNK = 96, 3, 16, 16, 32


def make_store(url: str, *, n: int = N, chunk: int = CHUNK, annotations: bool = True,
               seed: int = 0, fingerprint: str | None = None) -> str:
    """Write a small random data set store (train split) at ``url``; returns ``url``."""
    rng = np.random.default_rng(seed)
    g = zarr.open_group(url.removeprefix("file://"), mode="w")
    g.attrs.update({
        "schema_version": layout.SCHEMA_VERSION, "dataset": "toy", "classes": list("abcdefghij"),
        "num_classes": 10, "fingerprint": fingerprint or f"fp{seed:062d}", "splits": ["train"],
        "resolution": [H, W], "channels": C, "mean": [0.5] * 3, "std": [0.25] * 3,
        "params": {}, "salpipe_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
    })
    imgs = g.create_array("train/images", shape=(n, C, H, W), chunks=(chunk, C, H, W),
                          dtype="uint8")
    imgs[:] = rng.integers(0, 256, (n, C, H, W), dtype=np.uint8)
    labels = g.create_array("train/labels", shape=(n,), chunks=(chunk,), dtype="int16")
    labels[:] = rng.integers(0, 10, n).astype(np.int16)
    if annotations:
        yy, xx = np.mgrid[:H, :W]
        x0 = rng.integers(0, W // 2, n)
        y0 = rng.integers(0, H // 2, n)
        x1, y1 = x0 + rng.integers(2, W // 2, n), y0 + rng.integers(2, H // 2, n)
        masks = ((xx >= x0[:, None, None]) & (xx <= x1[:, None, None])
                 & (yy >= y0[:, None, None]) & (yy <= y1[:, None, None]))
        has = np.ones(n, bool)
        has[::7] = False
        masks[~has] = False
        m = g.create_array("train/annotations/mask", shape=(n, H * W // 8),
                           chunks=(chunk, H * W // 8), dtype="uint8")
        m[:] = pack_bits(masks)
        hm = g.create_array("train/annotations/has_mask", shape=(n,), chunks=(chunk,),
                            dtype="bool")
        hm[:] = has
        bb = g.create_array("train/annotations/bbox", shape=(n, 4), chunks=(chunk, 4),
                            dtype="int16")
        bb[:] = np.stack([x0, y0, x1, y1], 1).astype(np.int16)
    g["train"].attrs.update({"fingerprint": "split" + str(seed), "n": n, "chunk": chunk})
    return url


def make_teacher(path: Path, *, seed: int = 0, fingerprint: str = f"fp{0:062d}",
                 arch: str = "small_cnn", width: int = 8) -> Path:
    """A random-init teacher run directory (model.pt + model.json)."""
    import torch

    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = build_model(arch, 10, width=width)
    save_checkpoint(path, model, {"arch": arch, "width": width, "num_classes": 10,
                                  "mean": [0.5] * 3, "std": [0.25] * 3, "dataset": "toy",
                                  "dataset_fingerprint": fingerprint})
    return path


def store_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a local store except group metadata (whose attrs hold ``created``)."""
    out = {}
    for f in sorted(Path(path).rglob("*")):
        if f.is_file() and not (f.name == "zarr.json" and _is_group(f)):
            out[str(f.relative_to(path))] = f.read_bytes()
    return out


def _is_group(f: Path) -> bool:
    import json

    return json.loads(f.read_text()).get("node_type") == "group"



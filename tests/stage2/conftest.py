"""A tiny store with annotations and two complete cached saliency sources: a teacher's
``tiny_adv.gbp`` and the annotation source ``annotation.mask`` (stage two)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

SOURCE = "tiny_adv.gbp"


def write_store(path: Path, n_train: int = 48, n_test: int = 16, size: int = 16,
                classes: int = 4, chunk: int = 16, seed: int = 0) -> Path:
    """Learnable toy data (class k: bright quadrant k), masks on that quadrant, and a
    complete source ``tiny_adv.gbp`` whose map is the centred image."""
    import zarr
    from zarr.codecs import BloscCodec

    from pipeline.cache import layout
    from pipeline.cache.bits import pack_bits
    from pipeline.cache.saliency_store import create_source

    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w")
    digest = hashlib.sha256()
    h = size // 2
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, classes, n).astype(np.int16)
        x = rng.integers(0, 90, (n, 3, size, size)).astype(np.uint8)
        masks = np.zeros((n, size, size), bool)
        for i, k in enumerate(y):
            r, c = divmod(int(k) % 4, 2)
            x[i, int(k) % 3, r * h:(r + 1) * h, c * h:(c + 1) * h] += 150
            masks[i, r * h:(r + 1) * h, c * h:(c + 1) * h] = True
        has = np.ones(n, bool)
        has[::5] = False
        comp = BloscCodec(cname="zstd", clevel=3)
        root.create_array(layout.images_path(split), data=x, chunks=(chunk, 3, size, size),
                          compressors=comp)
        root.create_array(layout.labels_path(split), data=y, chunks=(chunk,))
        root.create_array(layout.annotation_path(split, "mask"), data=pack_bits(masks & has[:, None, None]),
                          chunks=(chunk, size * size // 8))
        root.create_array(layout.annotation_path(split, "has_mask"), data=has, chunks=(chunk,))
        root[split].attrs.update({"n": n, "chunk": chunk})
        digest.update(x.tobytes() + y.tobytes())
        if split == "train":
            grp = create_source(root, split, SOURCE, shape=x.shape, chunk=chunk,
                                with_bbox=False, attrs={})
            m = x.astype(np.float16) / 255 - 0.5
            grp["map"][:] = m
            grp["sign"][:] = pack_bits(m > 0)
            grp["mask"][:] = pack_bits(masks)
            ann = create_source(root, split, "annotation.mask", shape=x.shape, chunk=chunk,
                                with_bbox=False, attrs={})
            obj = masks & has[:, None, None]
            weak = (obj.astype(np.float16) * 2 - 1) * has[:, None, None]  # Eq. 10
            ann["map"][:] = np.repeat(weak[:, None], 3, axis=1)
            ann["sign"][:] = pack_bits(np.repeat(obj[:, None], 3, axis=1))
            ann["mask"][:] = pack_bits(obj)
    fp = digest.hexdigest()
    root.attrs.update({
        "schema_version": layout.SCHEMA_VERSION, "dataset": "tiny",
        "classes": [f"c{i}" for i in range(classes)], "num_classes": classes,
        "fingerprint": fp, "splits": ["train", "test"], "resolution": [size, size],
        "channels": 3, "mean": [0.3] * 3, "std": [0.25] * 3, "params": {},
    })
    done = {"dataset_fingerprint": fp, "schema_version": layout.SCHEMA_VERSION,
            "complete": True, "chunks_done": list(range(-(-n_train // chunk)))}
    root[layout.saliency_group("train", SOURCE)].attrs.update({
        "method": "gbp", "params": {}, "target": "pred", "teacher": "tiny_adv",
        "teacher_sha256": "0" * 64, **done})
    root[layout.saliency_group("train", "annotation.mask")].attrs.update({
        "method": "mask", "params": {}, "target": "label", "teacher": None,
        "teacher_sha256": None, **done})
    return path


@pytest.fixture
def sal_store(tmp_path) -> Path:
    return write_store(tmp_path / "tiny.zarr")

"""Saliency sources into stream extras: up-front checks naming the missing source, the
method's transform, masks, and the chunk / auto streams built from a store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from pipeline.cache import STREAMS, layout
from pipeline.cache.saliency_store import MissingSourceError
from pipeline.cache.sources import check_sources, open_sources, read_all
from pipeline.cache.stream import AugConfig
from pipeline.train import TRAINING

from .conftest import SOURCE


def _group(path):
    return zarr.open_group(str(path), mode="r+")


def test_missing_source_named_before_anything(sal_store):
    g = _group(sal_store)
    with pytest.raises(MissingSourceError, match=r"resnet10_adv\.gbp.*tiny_adv\.gbp"):
        check_sources(g, "train", [SOURCE, "resnet10_adv.gbp"])
    with pytest.raises(ValueError, match="teacher"):
        check_sources(g, "train", ["NotAName"])


def test_incomplete_and_foreign_sources_refused(sal_store):
    g = _group(sal_store)
    grp = g[layout.saliency_group("train", SOURCE)]
    grp.attrs["complete"] = False
    with pytest.raises(ValueError, match="incomplete"):
        check_sources(g, "train", [SOURCE])
    grp.attrs.update({"complete": True, "dataset_fingerprint": "f" * 64})
    with pytest.raises(ValueError, match="another data set"):
        check_sources(g, "train", [SOURCE])


def test_maps_get_the_method_transform(sal_store):
    g = _group(sal_store)
    sat = TRAINING.get("sat")()
    (src,) = open_sources(g, "train", [SOURCE], "map", sat.prepare_saliency)
    arr = read_all([src], 48)[SOURCE]
    raw = np.asarray(g[layout.saliency_group("train", SOURCE)]["map"][...])
    assert arr.dtype == np.float16 and np.array_equal(arr, np.sign(raw))
    assert src.provenance["teacher"] == "tiny_adv"
    assert np.array_equal(src.read(16, 32), arr[16:32])


def test_masks_teacher_and_human(sal_store):
    g = _group(sal_store)
    cached, human = open_sources(g, "train", [SOURCE, "annotation.mask"], "mask")
    a, b = cached.read(0, 48), human.read(0, 48)
    assert a.shape == b.shape == (48, 1, 16, 16) and a.dtype == b.dtype == bool
    has = np.asarray(g["train/annotations/has_mask"][...])
    assert np.array_equal(a[has], b[has])  # same quadrants
    assert not b[~has].any()  # no annotation: empty mask (perturbed everywhere)
    (weak,) = open_sources(g, "train", ["annotation.mask"], "map")
    s = weak.read(0, 48)
    assert set(np.unique(s[has])) == {-1, 1}  # Eq. 10
    assert np.array_equal(s[has] > 0, np.broadcast_to(b[has], s[has].shape))


@pytest.mark.parametrize("mode", ["memory", "chunks", "auto"])
def test_streams_from_store(sal_store, mode):
    g = _group(sal_store)
    sat = TRAINING.get("sat")()
    stream = STREAMS.get(mode).from_store(
        g, "train", saliency=[SOURCE], masks=["annotation.mask"],
        prepare=sat.prepare_saliency, batch_size=16, seed=0, device=torch.device("cpu"),
        aug=AugConfig(crop_padding=2, flip=True))
    assert getattr(stream, "mode", "memory") == ("memory" if mode == "auto" else mode)
    seen = 0
    for b in stream.batches(0):
        # the map is sign(centred image): it moved with its image through crop and flip
        assert b.saliency[SOURCE].dtype == torch.float32
        inside = b.saliency[SOURCE] != 0
        assert torch.equal(b.saliency[SOURCE][inside], torch.sign(b.x - 0.5)[inside])
        assert b.masks["annotation.mask"].dtype == torch.bool
        seen += len(b.y)
    assert seen == 48

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


@pytest.mark.parametrize("mode", ["memory", "chunks"])
def test_nan_or_inf_in_a_cached_map_is_refused_before_training(sal_store, mode):
    from pipeline.cache.saliency_store import NonFiniteSaliencyError

    g = _group(sal_store)
    smap = g[layout.saliency_group("train", SOURCE)]["map"]
    smap[21, 1, 3, 4] = np.nan  # both in chunk 1 (images 16..31)
    smap[18, 0, 0, 0] = np.inf
    sat = TRAINING.get("sat")()
    with pytest.raises(NonFiniteSaliencyError) as err:
        stream = STREAMS.get(mode).from_store(
            g, "train", saliency=[SOURCE], prepare=sat.prepare_saliency, batch_size=16,
            seed=0, device=torch.device("cpu"))
        list(stream.batches(0))  # the chunk stream checks each chunk as it reads it
    msg = str(err.value)
    assert f"train/{SOURCE}" in msg and str(sal_store) in msg
    assert "image indices [18, 21]" in msg and "NaN or inf" in msg
    assert "precompute-saliency --overwrite" in msg


def test_nan_check_covers_every_read_and_the_prepared_map(sal_store):
    from pipeline.cache.saliency_store import NonFiniteSaliencyError

    g = _group(sal_store)
    g[layout.saliency_group("train", SOURCE)]["map"][40] = np.nan
    (src,) = open_sources(g, "train", [SOURCE], "map")
    assert src.read(0, 32).shape == (32, 3, 16, 16)  # clean chunks read fine
    with pytest.raises(NonFiniteSaliencyError, match=r"image indices \[40\]"):
        src.read(32, 48)
    g[layout.saliency_group("train", SOURCE)]["map"][40] = 0
    (bad,) = open_sources(g, "train", [SOURCE], "map",
                          lambda name, m: np.full(m.shape, np.nan, np.float32))
    with pytest.raises(NonFiniteSaliencyError, match="after the method's prepare_saliency"):
        bad.read(0, 16)
    # masks of the same source are bits: never refused
    (mask,) = open_sources(g, "train", [SOURCE], "mask")
    assert mask.read(0, 48).dtype == bool


def test_damaged_map_chunk_is_a_clear_error(sal_store):
    from pathlib import Path

    from pipeline.cache.store import StoreError

    Path(sal_store, "train/saliency", SOURCE, "map/c/1/0/0/0").write_bytes(b"not blosc")
    g = _group(sal_store)
    (src,) = open_sources(g, "train", [SOURCE], "map")
    with pytest.raises(StoreError, match=r"saliency/tiny_adv\.gbp/map.*chunk 1.*cache verify"):
        src.read(16, 32)
    stream = STREAMS.get("chunks").from_store(
        g, "train", saliency=[SOURCE], batch_size=16, seed=0, device=torch.device("cpu"))
    with pytest.raises(StoreError, match="cannot decode"):
        list(stream.batches(0))

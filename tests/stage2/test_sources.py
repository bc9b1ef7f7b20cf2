"""Saliency sources into stream extras: up-front checks naming the missing source,
the method's transform, masks, and annotation sources derived from the split."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.cache import layout
from pipeline.cache.saliency_store import MissingSourceError
from pipeline.train import TRAINING
from pipeline.train.sources import check_sources, open_sources, read_all, saliency_kind

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
    (src,) = open_sources(g, "train", [SOURCE], saliency_kind(sat), sat.prepare_saliency)
    arr = read_all([src], 48)[SOURCE]
    raw = np.asarray(g[layout.saliency_group("train", SOURCE)]["map"][...])
    assert arr.dtype == np.float16 and np.array_equal(arr, np.sign(raw))
    assert src.provenance["teacher"] == "tiny_adv"
    assert np.array_equal(src.read(16, 32), arr[16:32])


def test_masks_cached_and_from_annotations(sal_store):
    g = _group(sal_store)
    sip = TRAINING.get("sip_at")()
    assert saliency_kind(sip) == "mask"
    cached, human = open_sources(g, "train", [SOURCE, "annotation.mask"], "mask")
    a, b = cached.read(0, 48), human.read(0, 48)
    assert a.shape == b.shape == (48, 1, 16, 16) and a.dtype == b.dtype == bool
    has = np.asarray(g["train/annotations/has_mask"][...])
    assert np.array_equal(a[has], b[has])  # same quadrants
    assert not b[~has].any()  # no annotation: empty mask (perturbed everywhere)
    assert human.provenance["derived_from"] == "train/annotations/mask"


def test_weak_saliency_from_annotations(sal_store):
    g = _group(sal_store)
    (src,) = open_sources(g, "train", ["annotation.mask"], "map")
    s = src.read(0, 48)
    m = open_sources(g, "train", ["annotation.mask"], "mask")[0].read(0, 48)
    has = np.asarray(g["train/annotations/has_mask"][...])
    assert s.shape == (48, 3, 16, 16)
    assert set(np.unique(s[has])) == {-1, 1}  # Eq. 10
    assert np.array_equal(s[has] > 0, np.broadcast_to(m[has], s[has].shape))
    assert not s[~has].any()


@pytest.mark.parametrize("mode", ["memory", "chunks"])
def test_method_sources_routed_and_streamed(sal_store, mode):
    import torch

    from pipeline.cache.stream import AugConfig
    from pipeline.train.sources import build_stream, open_method_sources

    g = _group(sal_store)
    with pytest.raises(ValueError, match="--saliency"):
        open_method_sources(g, "train", TRAINING.get("pgd_sat")())
    maps, masks, prov = open_method_sources(g, "train", TRAINING.get("sip_at")(),
                                            ["annotation.mask"])
    assert maps == [] and [m.name for m in masks] == ["annotation.mask"]
    maps, masks, prov = open_method_sources(g, "train", TRAINING.get("sat")(), [SOURCE],
                                            masks_from=["annotation.mask"])
    assert [m.name for m in maps] == [SOURCE] and set(prov) == {SOURCE, "annotation.mask"}
    stream, used = build_stream(g, "train", maps, masks, batch_size=16, seed=0,
                                device=torch.device("cpu"),
                                aug=AugConfig(crop_padding=2, flip=True), drop_last=False,
                                mode=mode)
    assert used == mode
    seen = 0
    for b in stream.batches(0):
        # the map is sign(centred image): it moved with the image through crop and flip
        assert b.saliency[SOURCE].dtype == torch.float32
        inside = b.saliency[SOURCE] != 0
        assert torch.equal(b.saliency[SOURCE][inside], torch.sign(b.x - 0.5)[inside])
        assert b.masks["annotation.mask"].dtype == torch.bool
        seen += len(b.y)
    assert seen == 48
    _, auto = build_stream(g, "train", maps, masks, batch_size=16, seed=0,
                           device=torch.device("cpu"), aug=AugConfig(), drop_last=False)
    assert auto == "memory"

"""The memory stream: alignment of extras under shuffle and augmentation, resumability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.cache.stream import AugConfig, MemoryStream, augment, read_split_arrays


def _stream(store_path, **kw):
    import zarr

    images, labels = read_split_arrays(
        zarr.open_group(str(store_path), mode="r"), "train"
    )
    # extras that encode each image's own content: the map IS the image, the mask is
    # a threshold of its first channel; any misalignment shows as inequality
    sal = {"self.map": images.astype(np.float16)}
    masks = {"self.mask": images[:, :1] > 127}
    return MemoryStream(images, labels, saliency=sal, masks=masks, **kw), images, labels


def test_alignment_after_shuffle_and_augment(tiny_store):
    stream, images, labels = _stream(
        tiny_store, batch_size=16, seed=3, aug=AugConfig(crop_padding=4, flip=True)
    )
    seen, changed = [], 0
    for batch in stream.batches(epoch=1):
        x255 = batch.x * 255
        assert torch.equal(batch.saliency["self.map"], x255)
        assert torch.equal(batch.masks["self.mask"], x255[:, :1] > 127)
        assert torch.equal(batch.y, torch.as_tensor(labels[batch.index.numpy()]).long())
        raw = torch.as_tensor(images[batch.index.numpy()]).float()
        changed += int((raw != x255).flatten(1).any(1).sum())
        seen.append(batch.index)
    order = torch.cat(seen)
    assert sorted(order.tolist()) == list(range(len(images)))  # each image once
    assert not torch.equal(order, torch.arange(len(images)))  # shuffled
    assert changed > len(images) // 2  # augmented


def test_resume_mid_epoch_sees_same_batches(tiny_store):
    stream, _, _ = _stream(
        tiny_store, batch_size=10, seed=1, aug=AugConfig(crop_padding=2, flip=True)
    )
    full = list(stream.batches(epoch=2))
    tail = list(stream.batches(epoch=2, start=3))
    assert len(full) == stream.num_batches == 7
    for a, b in zip(full[3:], tail, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x)
    other = list(stream.batches(epoch=3))
    assert not torch.equal(full[0].index, other[0].index)  # new permutation per epoch


def test_augment_matches_reference_crop_and_flip():
    """Batched crop+flip equals pad -> slice -> flip done image by image."""
    x = torch.rand(5, 2, 6, 7)
    gen = torch.Generator().manual_seed(0)
    (out,) = augment([x], AugConfig(crop_padding=2, flip=True), gen)
    gen = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 5, (5,), generator=gen)
    ox = torch.randint(0, 5, (5,), generator=gen)
    flip = torch.rand(5, generator=gen) < 0.5
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(5):
        ref = xp[i, :, oy[i] : oy[i] + 6, ox[i] : ox[i] + 7]
        ref = ref.flip(-1) if flip[i] else ref
        assert torch.equal(out[i], ref)


def test_bad_extra_shape_named(tiny_store):
    import zarr

    images, labels = read_split_arrays(
        zarr.open_group(str(tiny_store), mode="r"), "train"
    )
    with pytest.raises(ValueError, match="bad.map"):
        MemoryStream(
            images, labels, batch_size=4, saliency={"bad.map": images[:3] * 1.0}
        )
    with pytest.raises(KeyError, match="val"):
        read_split_arrays(zarr.open_group(str(tiny_store), mode="r"), "val")


def _write_self_source(store_path):
    """A cached source whose map is each image itself and whose mask thresholds it."""
    import zarr

    from pipeline.cache import layout
    from pipeline.cache.bits import pack_bits

    root = zarr.open_group(str(store_path), mode="r+")
    images = np.asarray(root[layout.images_path("train")][...])
    grp = root.require_group(layout.saliency_group("train", "self.map"))
    grp.create_array(
        "map", data=images.astype(np.float16), chunks=(32, *images.shape[1:])
    )
    grp.create_array("mask", data=pack_bits(images[:, 0] > 127), chunks=(32, 32))
    grp.attrs.update(
        {
            "method": "identity",
            "complete": True,
            "chunks_done": [0, 1],
            "dataset_fingerprint": root.attrs["fingerprint"],
        }
    )
    return images


def test_from_store_reads_cached_sources_aligned(tiny_store):
    pytest.importorskip("pipeline.cache.saliency_store")
    _write_self_source(tiny_store)
    stream = MemoryStream.from_store(
        str(tiny_store),
        "train",
        saliency=["self.map"],
        masks=["self.map"],
        batch_size=8,
        seed=0,
        aug=AugConfig(crop_padding=3, flip=True),
    )
    for batch in stream.batches(0):
        x255 = batch.x * 255
        assert torch.equal(batch.saliency["self.map"], x255)
        assert batch.masks["self.map"].shape == (len(batch.y), 1, 16, 16)
        assert torch.equal(batch.masks["self.map"], x255[:, :1] > 127)


def test_run_records_source_provenance(tiny_store, tmp_path):
    pytest.importorskip("pipeline.cache.saliency_store")
    import json

    from pipeline.stages.train import run_train
    from pipeline.train.config import train_config_from

    _write_self_source(tiny_store)
    cfg = train_config_from(
        {
            "epochs": 1,
            "batch_size": 32,
            "device": "cpu",
            "net": {"arch": "small_cnn", "width": 8},
        }
    )
    run_train(tiny_store, "standard", {}, cfg, tmp_path / "r", saliency=["self.map"])
    side = json.loads((tmp_path / "r" / "model.json").read_text())
    assert side["saliency_sources"]["self.map"]["method"] == "identity"
    with pytest.raises(Exception, match="nope.gbp"):
        run_train(
            tiny_store, "standard", {}, cfg, tmp_path / "q", saliency=["nope.gbp"]
        )


def test_stage_routes_sources_by_kind_and_prepares_maps(tiny_store, tmp_path):
    """``saliency_kind`` routes --saliency sources; ``prepare_saliency`` runs once."""
    pytest.importorskip("pipeline.cache.saliency_store")
    from dataclasses import dataclass

    from pipeline.stages.train import run_train
    from pipeline.train import TRAINING, TrainingMethod
    from pipeline.train.config import train_config_from
    from pipeline.train.method import cross_entropy_at

    seen = []

    @dataclass(frozen=True)
    class Probe(TrainingMethod):
        kind: str = "map"
        needs_saliency = True

        @property
        def saliency_kind(self):
            return self.kind

        def prepare_saliency(self, name, arr):
            return -arr

        def batch_loss(self, model, batch, ctx):
            seen.append((sorted(batch.saliency), sorted(batch.masks)))
            if self.kind == "map":
                assert torch.equal(batch.saliency["self.map"], -batch.x * 255)
            else:
                assert torch.equal(batch.masks["self.map"], batch.x[:, :1] * 255 > 127)
            return cross_entropy_at(model, batch.x, batch.y)

    _write_self_source(tiny_store)
    cfg = train_config_from(
        {
            "epochs": 1,
            "batch_size": 32,
            "device": "cpu",
            "aug": {"crop_padding": 2, "flip": True},
            "net": {"arch": "small_cnn", "width": 8},
        }
    )
    TRAINING.register("zz_probe")(Probe)
    try:
        with pytest.raises(Exception, match="needs saliency"):
            run_train(tiny_store, "zz_probe", {}, cfg, tmp_path / "none")
        run_train(
            tiny_store, "zz_probe", {}, cfg, tmp_path / "m", saliency=["self.map"]
        )
        run_train(
            tiny_store,
            "zz_probe",
            {"kind": "mask"},
            cfg,
            tmp_path / "k",
            saliency=["self.map"],
        )
    finally:
        TRAINING._items.pop("zz_probe")
    assert seen[0] == (["self.map"], []) and seen[-1] == ([], ["self.map"])

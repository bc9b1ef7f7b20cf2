"""prepare-data writes the contracts.md store; open_store/read_split/store_info read it."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import zarr

from pipeline.cache import layout
from pipeline.cache.store import open_store, read_split, store_info
from pipeline.data import DATASETS, DataError
from pipeline.stages.prepare_data import run_prepare_data


def shapes(**kw):
    return DATASETS.get("shapes")(**{"n_train": 40, "n_test": 12, "resolution": 16, **kw})


def test_round_trip_and_attrs(tmp_path):
    cfg, out = shapes(), tmp_path / "shapes.zarr"
    summary = run_prepare_data(cfg, out, chunk=16)
    assert not summary["skipped"] and summary["split_sizes"] == {"train": 40, "test": 12}
    group = open_store(out)
    info = store_info(group)
    for key in ("schema_version", "dataset", "classes", "num_classes", "fingerprint", "splits",
                "resolution", "channels", "mean", "std", "params", "salpipe_version",
                "created"):
        assert key in info, key
    assert info["schema_version"] == layout.SCHEMA_VERSION and info["dataset"] == "shapes"
    assert info["resolution"] == [16, 16] and info["num_classes"] == 10
    assert info["params"]["n_train"] == 40
    for split, n in (("train", 40), ("test", 12)):
        want = cfg.generate(split, 0, n)
        got = read_split(out, split)
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.masks, want.masks)
        np.testing.assert_array_equal(got.bbox, want.boxes)
        assert got.has_mask.all() and got.labels.dtype == np.int64
        arr = group[layout.images_path(split)]
        assert arr.chunks == (16, 3, 16, 16) and arr.dtype == np.uint8
        assert group[layout.labels_path(split)].dtype == np.int16
        assert group[layout.annotation_path(split, "mask")].shape == (n, 32)
        assert group[split].attrs["n"] == n and group[split].attrs["chunk"] == 16
        codec = json.dumps(arr.metadata.to_dict()["codecs"])
        assert "blosc" in codec and "zstd" in codec
    x = read_split(group, "train").images / 255.0
    np.testing.assert_allclose(info["mean"], x.mean((0, 2, 3)), atol=1e-9)
    np.testing.assert_allclose(info["std"], x.std((0, 2, 3)), atol=1e-9)
    part = read_split(group, "train", 5, 9)
    np.testing.assert_array_equal(part.images, read_split(group, "train").images[5:9])


def test_fingerprint_stable_across_chunk_sizes_and_sensitive_to_content(tmp_path):
    a = run_prepare_data(shapes(), tmp_path / "a.zarr", chunk=16)["fingerprint"]
    b = run_prepare_data(shapes(), tmp_path / "b.zarr", chunk=7)["fingerprint"]
    c = run_prepare_data(shapes(seed=3), tmp_path / "c.zarr", chunk=16)["fingerprint"]
    assert a == b != c and len(a) == 64
    fa = open_store(tmp_path / "a.zarr")["train"].attrs["fingerprint"]
    assert fa == open_store(tmp_path / "b.zarr")["train"].attrs["fingerprint"]


def test_idempotent_and_refuses_other_params(tmp_path, caplog):
    out = tmp_path / "s.zarr"
    run_prepare_data(shapes(), out, chunk=16)
    stamp = (out / "zarr.json").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        again = run_prepare_data(shapes(), out, chunk=16)
    assert again["skipped"] and "up to date" in caplog.text
    assert (out / "zarr.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="params.*overwrite"):
        run_prepare_data(shapes(n_test=13), out, chunk=16)
    with pytest.raises(FileExistsError, match="chunk"):
        run_prepare_data(shapes(), out, chunk=8)
    fresh = run_prepare_data(shapes(n_test=13), out, chunk=16, overwrite=True)
    assert not fresh["skipped"] and store_info(out)["split_sizes"]["test"] == 13
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_failing_adapter_leaves_no_store(tiny_folder, tmp_path_factory, image_writer):
    (tiny_folder / "train" / "dog" / "dog2.jpg").write_bytes(b"\xff\xd8\xff broken")
    cfg = DATASETS.get("imagefolder")(root=str(tiny_folder), resolution=8)
    out = tmp_path_factory.mktemp("out") / "folder.zarr"
    with pytest.raises(DataError, match="dog2.jpg"):
        run_prepare_data(cfg, out, chunk=2)
    assert list(out.parent.iterdir()) == []
    # an existing good store survives a failing --overwrite run untouched
    image_writer(tiny_folder / "train" / "dog" / "dog2.jpg", 18, 12, 5)
    good = run_prepare_data(DATASETS.get("imagefolder")(root=str(tiny_folder), resolution=8),
                            out, chunk=2)
    (tiny_folder / "train" / "dog" / "dog2.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="dog2.jpg"):
        run_prepare_data(DATASETS.get("imagefolder")(root=str(tiny_folder), resolution=8),
                         out, chunk=2, overwrite=True)
    assert store_info(out)["fingerprint"] == good["fingerprint"]
    assert [p.name for p in out.parent.iterdir()] == ["folder.zarr"]


def test_memory_and_file_urls():
    url = "memory://salpipe-test/shapes.zarr"
    summary = run_prepare_data(shapes(), url, chunk=16)
    assert store_info(url)["fingerprint"] == summary["fingerprint"]
    np.testing.assert_array_equal(read_split(url, "test").images,
                                  shapes().generate("test", 0, 12).images)
    assert run_prepare_data(shapes(), url, chunk=16)["skipped"]
    fs = fsspec.filesystem("memory")
    assert fs.ls("/salpipe-test", detail=False) == ["/salpipe-test/shapes.zarr"]
    with pytest.raises(ValueError):  # a failing run leaves nothing behind either
        run_prepare_data(DATASETS.get("shapes")(resolution=16, n_train=4, n_test=2),
                         "memory://salpipe-bad/s.zarr", chunk=0)
    assert not fs.exists("/salpipe-bad/s.zarr")
    fs.rm("/salpipe-test", recursive=True)


def test_file_url(tmp_path):
    run_prepare_data(shapes(), tmp_path / "s.zarr", chunk=16)
    url = (tmp_path / "s.zarr").as_uri()
    assert read_split(url, "train").images.shape == (40, 3, 16, 16)


def test_open_store_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.zarr"):
        open_store(tmp_path / "nowhere.zarr")
    g = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    g.attrs["schema_version"] = 0
    with pytest.raises(ValueError, match="schema_version 0"):
        open_store(tmp_path / "old.zarr")
    run_prepare_data(shapes(), tmp_path / "s.zarr", chunk=16)
    with pytest.raises(KeyError, match="splits: train, test"):
        read_split(tmp_path / "s.zarr", "val")


def test_adapter_without_annotations(tmp_path, cifar_writer):
    cifar_writer(tmp_path, True)
    out = tmp_path / "c.zarr"
    run_prepare_data(DATASETS.get("cifar10")(root=str(tmp_path)), out, chunk=5)
    got = read_split(out, "test")
    assert got.masks is None and got.bbox is None and got.images.shape == (12, 3, 32, 32)
    assert "annotations" not in open_store(out)["test"]

"""Every bad input a clear error naming the store, split, source or file: stores that are
no stores, verify --source without --split, damaged chunks and metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from salcache_helpers import make_store

from cli import main
from pipeline.cache import layout
from pipeline.cache.saliency_store import (
    MissingSourceError,
    open_group,
    read_saliency,
    source_group,
)
from pipeline.cache.store import StoreError, open_store, read_split
from pipeline.stages.cache_export import run_export
from pipeline.stages.cache_info import cache_info, format_info
from pipeline.stages.cache_verify import run_verify
from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute
from pipeline.stages.show_saliency import run_show_saliency


def _run(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *map(str, args)])


def _bad_stores(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase its error must hold)."""
    plain = tmp_path / "plain.zarr"
    plain.write_text("not a store")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    v2 = tmp_path / "v2.zarr"
    v2.mkdir()
    (v2 / ".zgroup").write_text('{"zarr_format": 2}')
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("{not json")
    arr = tmp_path / "array.zarr"
    zarr.create_array(str(arr), shape=(3,), dtype="uint8")
    other = make_store(str(tmp_path / "other.zarr"))
    zarr.open_group(other, mode="r+").attrs["schema_version"] = 99
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").attrs["x"] = 1
    return {
        "file": (plain, "is a file, not a data set store"),
        "folder": (folder, "is a folder but not a Zarr store"),
        "v2": (v2, "Zarr v2 store"),
        "json": (broken, "zarr.json is not valid JSON"),
        "array": (arr, "is a Zarr array, not a data set store"),
        "schema": (Path(other), "schema_version 99"),
        "foreign": (foreign, "no schema_version"),
    }


@pytest.mark.parametrize("kind", ["file", "folder", "v2", "json", "array", "schema",
                                  "foreign"])
def test_what_is_not_a_store_says_so(tmp_path, kind):
    path, phrase = _bad_stores(tmp_path)[kind]
    for opener in (open_store, open_group, read_split):
        args = (path, "train") if opener is read_split else (path,)
        with pytest.raises(ValueError, match=phrase) as err:
            opener(*args)
        assert str(path) in str(err.value)
    res = _run("cache", "info", path)
    assert res.exit_code == 1 and "Error: " in res.output and phrase in res.output
    assert str(path) in res.output and "Traceback" not in res.output


def test_missing_store_split_and_source_name_what_exists(tmp_path, store):
    with pytest.raises(FileNotFoundError, match="nope.zarr"):
        open_store(tmp_path / "nope.zarr")
    with pytest.raises(KeyError, match=r"split 'val' not in store .*toy\.zarr.*\['train'\]"):
        source_group(store, "val", "teach_a.grad")
    with pytest.raises(KeyError, match="splits: train"):
        read_split(store, "val")
    with pytest.raises(MissingSourceError, match=r"'teach_a\.grad' not in split 'train'.*none"):
        read_saliency(store, "train", "teach_a.grad")
    res = _run("show-saliency", "--store", store, "--split", "val", "--source", "a.b",
               "--out", tmp_path / "x.png")
    assert res.exit_code == 1 and "split 'val' not in store" in res.output
    res = _run("cache", "export", store, "--to", tmp_path / "x.h5", "--source", "a.b")
    assert res.exit_code == 1 and "searched split(s) train" in res.output
    assert not (tmp_path / "x.h5").exists()


def _two_splits(store: str) -> str:
    """Give the store a ``test`` split (a copy of train) with no saliency sources."""
    g = zarr.open_group(store, mode="r+")
    for name in ("images", "labels"):
        src = g[f"train/{name}"]
        g.create_array(f"test/{name}", data=src[...], chunks=src.chunks)
    g.attrs["splits"] = ["train", "test"]
    return store


def test_verify_source_without_split_checks_the_splits_that_hold_it(store):
    _two_splits(store)
    run_precompute(store, PrecomputeConfig(source="annotation.mask"))
    report = run_verify(store, source="annotation.mask", sample=1)
    assert report.ok, report.problems
    assert report.checked and all(c.startswith("train/") for c in report.checked)
    res = _run("cache", "verify", store, "--source", "annotation.mask")
    assert res.exit_code == 0 and "cache verified" in res.output, res.output
    # a source in no split: an error naming the splits searched and what they hold
    with pytest.raises(MissingSourceError,
                       match=r"'annotation\.bbox'.*searched split\(s\) train, test.*"
                             r"train: annotation\.mask; test: none"):
        run_verify(store, source="annotation.bbox")
    res = _run("cache", "verify", store, "--source", "annotation.bbox")
    assert res.exit_code == 1 and "searched split(s) train, test" in res.output
    # asked in a split that lacks it, or in a split that does not exist
    with pytest.raises(MissingSourceError, match=r"searched split\(s\) test"):
        run_verify(store, "test", "annotation.mask")
    with pytest.raises(KeyError, match=r"split 'val' not in store.*\['train', 'test'\]"):
        run_verify(store, "val", "annotation.mask")


@pytest.fixture
def ann_store(store) -> str:
    run_precompute(store, PrecomputeConfig(source="annotation.mask"))
    return store


def _garble(path: Path) -> None:
    path.write_bytes(b"this is no blosc frame")


def test_damaged_chunks_are_clear_errors(ann_store, teacher, tmp_path):
    src = "annotation.mask"
    _garble(Path(ann_store, "train/saliency", src, "map/c/1/0/0/0"))
    pat = r"cannot decode .*train/saliency/annotation\.mask/map \(rows 32:64, chunk 1"
    with pytest.raises(StoreError, match=pat):
        read_saliency(ann_store, "train", src)
    with pytest.raises(StoreError, match=r"saliency/annotation\.mask/map.*chunk 1"):
        run_show_saliency(ann_store, src, tmp_path / "g.png", start=40, n=2)
    with pytest.raises(StoreError, match=r"annotation\.mask/map"):
        run_export(ann_store, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    info = cache_info(ann_store)["splits"]["train"]["sources"][src]
    assert info["pointing_game"] is None and "chunk 1" in info["pointing_game_error"]
    assert "energy pointing game not computed" in format_info(cache_info(ann_store))
    report = run_verify(ann_store, sample=0)
    assert any("chunk 1 corrupt" in p for p in report.problems)
    res = _run("show-saliency", "--store", ann_store, "--source", src, "--start", 33,
               "--out", tmp_path / "g.png")
    assert res.exit_code == 1 and "Error: cannot decode" in res.output
    # damaged images: read_split and precompute say which array and chunk
    _garble(Path(ann_store, "train/images/c/2/0/0/0"))
    with pytest.raises(StoreError, match=r"train/images \(rows 64:96, chunk 2"):
        read_split(ann_store, "train")
    with pytest.raises(StoreError, match=r"train/images \(rows 64:96, chunk 2"):
        run_precompute(ann_store, PrecomputeConfig(teacher=teacher, method="grad"))


def test_damaged_metadata_is_a_clear_error(ann_store, teacher, tmp_path):
    run_precompute(ann_store, PrecomputeConfig(teacher=teacher, method="grad"))
    meta = Path(ann_store, "train/saliency/annotation.mask/map/zarr.json")
    meta.write_text("{oops")
    info = cache_info(ann_store)["splits"]["train"]["sources"]
    assert "annotation.mask/map" in info["annotation.mask"]["error"]
    assert info["teach_a.grad"]["complete"]  # the other source is still shown
    assert "DAMAGED" in format_info(cache_info(ann_store))
    report = run_verify(ann_store, sample=0)
    assert any("annotation.mask/map/zarr.json" in p for p in report.problems)
    with pytest.raises(StoreError, match=r"annotation\.mask/map/zarr\.json"):
        read_saliency(ann_store, "train", "annotation.mask")
    # a damaged source group: named, and --overwrite recomputes it
    Path(ann_store, "train/saliency/annotation.mask/zarr.json").write_text("")
    with pytest.raises(StoreError, match=r"train/saliency/annotation\.mask/zarr\.json"):
        cache_info(ann_store)
    res = _run("cache", "info", ann_store)
    assert res.exit_code == 1 and "annotation.mask/zarr.json" in res.output
    with pytest.raises(StoreError, match=r"annotation\.mask/zarr\.json"):
        run_precompute(ann_store, PrecomputeConfig(source="annotation.mask"))
    res = run_precompute(ann_store, PrecomputeConfig(source="annotation.mask"),
                         overwrite=True)
    assert res["status"] == "computed"
    assert run_verify(ann_store, sample=1).ok


def test_export_attrs_stay_json(ann_store, tmp_path):
    # a sanity check that the error paths did not change what a sound export holds
    import h5py

    res = run_export(ann_store, tmp_path / "ok.h5", source="annotation.mask")
    with h5py.File(res["out"], "r") as h5:
        attrs = {k: json.loads(v) for k, v in h5[layout.saliency_group(
            "train", "annotation.mask")].attrs.items()}
        assert attrs["complete"] is True
        assert np.array_equal(h5["train/images"][...],
                              zarr.open_group(ann_store, mode="r")["train/images"][...])

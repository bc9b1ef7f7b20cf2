"""cache verify (corrupt, missing, swapped teacher), HDF5 export, cache info."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from salcache_helpers import make_teacher

from pipeline.stages.cache_export import read_attrs, run_export
from pipeline.stages.cache_info import cache_info, format_info
from pipeline.stages.cache_verify import run_verify
from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute


@pytest.fixture
def filled(store, teacher) -> str:
    run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad", batch_size=32))
    run_precompute(store, PrecomputeConfig(source="annotation.mask"))
    return store


def _chunk_file(store: str, source: str, kind: str, index: int) -> Path:
    tail = f"c/{index}/0/0/0" if kind == "map" else f"c/{index}/0"
    return Path(store, "train/saliency", source, kind, tail)


def test_sound_cache_verifies(filled):
    report = run_verify(filled, sample=2)
    assert report.ok, report.problems
    assert sum("recomputed" in c for c in report.checked) == 4


def test_corrupted_chunk_is_caught(filled):
    f = _chunk_file(filled, "teach_a.grad", "map", 1)
    data = bytearray(f.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = b"\x00" * 16  # bit rot inside the payload
    f.write_bytes(bytes(data))
    report = run_verify(filled, sample=0)
    assert not report.ok
    assert any("teach_a.grad: chunk 1 corrupt" in p for p in report.problems)
    assert not any("annotation.mask" in p for p in report.problems)


def test_garbage_chunk_is_caught(filled):
    _chunk_file(filled, "teach_a.grad", "sign", 2).write_bytes(b"not a blosc frame")
    report = run_verify(filled, source="teach_a.grad", sample=0)
    assert any("chunk 2 corrupt" in p for p in report.problems)


def test_missing_chunk_is_caught(filled):
    _chunk_file(filled, "annotation.mask", "mask", 0).unlink()
    report = run_verify(filled, sample=0)
    assert report.problems == ["train/annotation.mask: chunk 0 missing (mask)"]


def test_swapped_teacher_is_caught(filled, teacher):
    make_teacher(teacher, seed=5)
    report = run_verify(filled, source="teach_a.grad", sample=1)
    assert any("cannot be recomputed" in p and "sha256" in p for p in report.problems)


def test_wrong_values_are_caught_by_recomputation(filled):
    # a consistent rewrite (valid chunk, new digest recorded) only recomputation sees
    from pipeline.cache.saliency_store import chunk_digest, read_chunk

    grp = zarr.open_group(filled, mode="r+")["train/saliency/teach_a.grad"]
    grp["map"][0:32] = grp["map"][32:64]
    digests = dict(grp.attrs["chunk_digests"], **{"0": chunk_digest(read_chunk(grp, 0))})
    grp.update_attributes({"chunk_digests": digests})
    report = run_verify(filled, source="teach_a.grad", sample=3)
    assert any("chunk 0 map differs" in p for p in report.problems)


def test_export_round_trip(filled, tmp_path):
    out = tmp_path / "out" / "cache.h5"
    res = run_export(filled, out)
    assert out.is_file() and not list(out.parent.glob(".*tmp*"))
    g = zarr.open_group(filled, mode="r")
    with h5py.File(out, "r") as h5:
        assert read_attrs(h5) == dict(g.attrs)
        for path in res["arrays"]:
            np.testing.assert_array_equal(h5[path][...], g[path][...])
            assert h5[path].dtype == g[path].dtype
        src = "train/saliency/teach_a.grad"
        assert read_attrs(h5[src]) == dict(g[src].attrs)
        assert {"train/images", f"{src}/map", f"{src}/sign", f"{src}/mask"} <= set(res["arrays"])


def test_export_one_source(filled, tmp_path):
    res = run_export(filled, tmp_path / "one.h5", source="annotation.mask")
    assert not any("teach_a" in p for p in res["arrays"])
    assert "train/images" in res["arrays"]


def test_info_lists_sources_and_pointing_game(filled):
    info = cache_info(filled)
    src = info["splits"]["train"]["sources"]
    assert set(src) == {"teach_a.grad", "annotation.mask"}
    grad = src["teach_a.grad"]
    assert grad["complete"] and grad["chunks_done"] == grad["chunks"] == 3
    assert grad["bytes"] > 0 and grad["method"] == "grad"
    ann = src["annotation.mask"]["pointing_game"]
    # a +-1 map spreads its energy evenly: the score is the mean object area
    assert ann["score"] == pytest.approx(ann["mask_area"], abs=1e-6)
    assert 0 <= grad["pointing_game"]["score"] <= 1
    text = format_info(info)
    assert "teach_a.grad: complete" in text and "energy pointing game" in text
    json.dumps(info)

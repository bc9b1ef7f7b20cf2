"""Precompute: arrays and chunks, provenance, idempotence, refusal, NaN, annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from salcache_helpers import CHUNK, C, H, N, W, make_store, make_teacher, store_bytes

from pipeline.cache.saliency_store import (
    MissingSourceError,
    ProvenanceMismatchError,
    list_sources,
    read_saliency,
    source_provenance,
)
from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute
from pipeline.stages.saliency_chunks import NonFiniteSaliencyError, derive_arrays


def _grad_cfg(teacher, **kw) -> PrecomputeConfig:
    return PrecomputeConfig(teacher=teacher, method="grad", batch_size=16, target="label",
                            **kw)


def test_arrays_match_direct_attribution(store, teacher):
    from pipeline.saliency import SALIENCY
    from pipeline.saliency.transforms import salience_mask
    from pipeline.stages.loading import load_model

    res = run_precompute(store, _grad_cfg(teacher))
    assert res["status"] == "computed" and res["computed"] == [0, 1, 2]
    g = zarr.open_group(store, mode="r")
    src = g["train/saliency/teach_a.grad"]
    assert src["map"].dtype == np.float16 and src["map"].shape == (N, C, H, W)
    assert src["map"].chunks[0] == g["train/images"].chunks[0] == CHUNK
    assert src["sign"].shape == (N, C * H * W // 8) and src["mask"].shape == (N, H * W // 8)
    model, _ = load_model(teacher)
    x = torch.from_numpy(g["train/images"][:]).float() / 255
    y = torch.from_numpy(g["train/labels"][:].astype(np.int64))
    want = SALIENCY.get("grad")().attribute(model, x, y).numpy().astype(np.float16)
    smap = read_saliency(store, "train", "teach_a.grad")
    np.testing.assert_allclose(smap.astype(np.float32), want.astype(np.float32),
                               rtol=1e-2, atol=1e-6)
    np.testing.assert_array_equal(read_saliency(store, "train", "teach_a.grad", "sign"),
                                  smap > 0)
    mask = salience_mask(torch.from_numpy(smap.astype(np.float64))).numpy()
    np.testing.assert_array_equal(read_saliency(store, "train", "teach_a.grad", "mask"), mask)
    prov = source_provenance(store, "train", "teach_a.grad")
    from pipeline.models.checkpoint import checkpoint_sha256

    assert prov["teacher_sha256"] == checkpoint_sha256(teacher)
    assert prov["dataset_fingerprint"] == g.attrs["fingerprint"]
    assert (prov["method"], prov["target"], prov["teacher"]) == ("grad", "label", "teach_a")
    assert prov["complete"] and prov["chunks_done"] == [0, 1, 2]
    assert list_sources(store, "train") == ["teach_a.grad"]


def test_second_run_does_nothing(store, teacher):
    run_precompute(store, _grad_cfg(teacher))
    before = store_bytes(Path(store))
    res = run_precompute(store, _grad_cfg(teacher))
    assert res["status"] == "nothing to do" and res["computed"] == []
    assert store_bytes(Path(store)) == before


def test_other_teacher_checkpoint_is_refused(store, teacher, tmp_path):
    run_precompute(store, _grad_cfg(teacher))
    make_teacher(teacher, seed=1)  # same directory name, other weights
    with pytest.raises(ProvenanceMismatchError, match="teacher_sha256"):
        run_precompute(store, _grad_cfg(teacher))
    res = run_precompute(store, _grad_cfg(teacher), overwrite=True)
    assert res["status"] == "computed" and res["computed"] == [0, 1, 2]


def test_other_dataset_is_refused(store, teacher, tmp_path):
    run_precompute(store, _grad_cfg(teacher))
    g = zarr.open_group(store, mode="r+")
    g.attrs["fingerprint"] = "f" * 64  # the data set was rebuilt from other content
    make_teacher(teacher, fingerprint="f" * 64)
    with pytest.raises(ProvenanceMismatchError, match="dataset_fingerprint"):
        run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad",
                                               source="teach_a.grad"))


def test_teacher_of_another_dataset_is_refused(store, tmp_path):
    other = make_teacher(tmp_path / "other", fingerprint="e" * 64)
    with pytest.raises(ValueError, match="fingerprint"):
        run_precompute(store, _grad_cfg(other))


@pytest.mark.parametrize("change", [{"params": {"sigma": 0.3}}, {"target": "pred"}])
def test_other_params_or_target_are_refused(store, teacher, change):
    base = {"teacher": teacher, "method": "smoothgrad", "batch_size": 32, "target": "label",
            "params": {"sigma": 0.1, "samples": 2}}
    run_precompute(store, PrecomputeConfig(**base))
    params = {**base["params"], **change.get("params", {})}
    cfg = PrecomputeConfig(**{**base, **change, "params": params})
    with pytest.raises(ProvenanceMismatchError, match=next(iter(change))):
        run_precompute(store, cfg)


def test_bad_method_params_name_the_key(store, teacher):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="sigmaa"):
        run_precompute(store, PrecomputeConfig(teacher=teacher, method="smoothgrad",
                                               params={"sigmaa": 0.1}))


def test_nan_saliency_names_the_images(store, teacher):
    attr = np.zeros((4, C, H, W), np.float32)
    attr[1, 0, 2, 2] = np.nan
    attr[3, 2, 0, 0] = np.inf
    with pytest.raises(NonFiniteSaliencyError, match=r"\[65, 67\]"):
        derive_arrays(attr, None, start=64)
    # end to end: a teacher with NaN weights fails and names the chunk's images
    from pipeline.models.checkpoint import save_checkpoint
    from pipeline.stages.loading import load_model

    model, meta = load_model(teacher)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    save_checkpoint(teacher, model, meta)
    with pytest.raises(NonFiniteSaliencyError, match=r"image indices \[(0|32|64), "):
        run_precompute(store, PrecomputeConfig(teacher=teacher, method="grad", workers=1))
    assert not source_provenance(store, "train", "teach_a.grad")["complete"]
    with pytest.raises(ValueError, match="incomplete"):
        read_saliency(store, "train", "teach_a.grad")


def test_box_method_writes_boxes(store, teacher):
    run_precompute(store, PrecomputeConfig(teacher=teacher, method="gradcampp_box",
                                           params={"threshold": 0.4}))
    boxes = read_saliency(store, "train", "teach_a.gradcampp_box", "bbox")
    assert boxes.shape == (N, 4) and boxes.dtype == np.int16
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes[:, 2:].max() < W


def test_annotation_mask_source_is_eq10(store):
    run_precompute(store, PrecomputeConfig(source="annotation.mask"))
    from pipeline.cache.bits import unpack_bits

    g = zarr.open_group(store, mode="r")
    masks = unpack_bits(g["train/annotations/mask"][:], (H, W))
    has = g["train/annotations/has_mask"][:]
    smap = read_saliency(store, "train", "annotation.mask")
    want = np.where(masks, 1.0, -1.0)[:, None].repeat(C, 1) * has[:, None, None, None]
    np.testing.assert_array_equal(smap, want.astype(np.float16))
    np.testing.assert_array_equal(read_saliency(store, "train", "annotation.mask", "mask"),
                                  masks & has[:, None, None])
    prov = source_provenance(store, "train", "annotation.mask")
    assert prov["teacher"] == "annotation" and prov["method"] == "mask"


def test_annotation_bbox_source(store):
    run_precompute(store, PrecomputeConfig(source="annotation.bbox"))
    g = zarr.open_group(store, mode="r")
    boxes = g["train/annotations/bbox"][:]
    np.testing.assert_array_equal(read_saliency(store, "train", "annotation.bbox", "bbox"),
                                  boxes)
    x0, y0, x1, y1 = boxes[5]
    smap = read_saliency(store, "train", "annotation.bbox")[5]
    assert (smap[:, y0:y1 + 1, x0:x1 + 1] == 1).all()
    assert (smap == 1).sum() == C * (x1 - x0 + 1) * (y1 - y0 + 1)
    assert set(np.unique(smap)) == {-1.0, 1.0}


def test_annotation_source_without_annotations_is_an_error(tmp_path):
    url = make_store(str(tmp_path / "plain.zarr"), annotations=False)
    with pytest.raises(ValueError, match="has no train/annotations/mask"):
        run_precompute(url, PrecomputeConfig(source="annotation.mask"))
    with pytest.raises(ValueError, match="boxes"):
        run_precompute(url, PrecomputeConfig(source="annotation.bbox"))


def test_missing_source_lists_existing(store, teacher):
    run_precompute(store, _grad_cfg(teacher))
    with pytest.raises(MissingSourceError, match="teach_a.grad"):
        read_saliency(store, "train", "teach_a.gbp")


def test_missing_store_and_split(tmp_path, teacher):
    with pytest.raises(FileNotFoundError, match="nope.zarr"):
        run_precompute(str(tmp_path / "nope.zarr"), _grad_cfg(teacher))
    url = make_store(str(tmp_path / "s.zarr"))
    with pytest.raises(KeyError, match="split 'val'"):
        run_precompute(url, PrecomputeConfig(split="val", teacher=teacher, method="grad"))


def test_memory_store(teacher):
    url = make_store("memory://cache_test/toy.zarr")
    res = run_precompute(url, _grad_cfg(teacher))
    assert res["computed"] == [0, 1, 2]
    assert read_saliency(url, "train", "teach_a.grad").shape == (N, C, H, W)
    assert run_precompute(url, _grad_cfg(teacher))["status"] == "nothing to do"
    from pipeline.stages.cache_info import cache_info
    from pipeline.stages.cache_verify import run_verify

    assert run_verify(url, sample=1).ok
    assert cache_info(url)["splits"]["train"]["sources"]["teach_a.grad"]["bytes"] > 0


def test_file_url_store(tmp_path, teacher):
    path = tmp_path / "f.zarr"
    url = make_store(f"file://{path}")
    run_precompute(url, _grad_cfg(teacher))
    meta = json.loads((path / "train/saliency/teach_a.grad/zarr.json").read_text())
    assert meta["attributes"]["complete"] is True


def test_stochastic_method_is_seeded_per_chunk(store, teacher, tmp_path):
    cfg = PrecomputeConfig(teacher=teacher, method="smoothgrad", batch_size=32,
                           params={"sigma": 0.2, "samples": 2})
    run_precompute(store, cfg)
    smap = read_saliency(store, "train", "teach_a.smoothgrad")
    other = make_store(str(tmp_path / "again.zarr"))
    run_precompute(other, PrecomputeConfig(**{**cfg.__dict__, "workers": 1}))
    np.testing.assert_array_equal(read_saliency(other, "train", "teach_a.smoothgrad"), smap)
    # noise differs between chunks: identical images in two chunks get different maps
    assert not np.array_equal(smap[:CHUNK], smap[CHUNK:2 * CHUNK])


def test_teacher_given_as_model_pt_names_its_directory(store, teacher):
    res = run_precompute(store, _grad_cfg(teacher / "model.pt"))
    assert res["source"] == "train/teach_a.grad"
    assert run_precompute(store, _grad_cfg(teacher))["status"] == "nothing to do"



def test_annotation_provenance_is_what_precompute_records(store):
    from pipeline.cache.saliency_store import annotation_provenance

    run_precompute(store, PrecomputeConfig(source="annotation.bbox"))
    stored = source_provenance(store, "train", "annotation.bbox")
    want = annotation_provenance(zarr.open_group(store, mode="r"), "bbox")
    assert {k: stored[k] for k in want} == want
    with pytest.raises(MissingSourceError):
        source_provenance(store, "train", "annotation.mask")

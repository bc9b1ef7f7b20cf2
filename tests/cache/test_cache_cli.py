"""The cache commands through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from salcache_helpers import make_store

from cli import main


def _run(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *map(str, args)])


def test_precompute_info_verify_export_gallery(store, teacher, tmp_path):
    res = _run("precompute-saliency", "--store", store, "--split", "train", "--teacher",
               teacher, "--method", "smoothgrad", "-p", "sigma=0.1", "-p", "samples=2",
               "--target", "pred", "--batch-size", "32")
    assert res.exit_code == 0, res.output
    assert "train/teach_a.smoothgrad: computed 3 of 3 chunks" in res.output
    again = _run("precompute-saliency", "--store", store, "--teacher", teacher, "--method",
                 "smoothgrad", "-p", "sigma=0.1", "-p", "samples=2", "--target", "pred")
    assert again.exit_code == 0 and "nothing to do" in again.output
    other = _run("precompute-saliency", "--store", store, "--teacher", teacher, "--method",
                 "smoothgrad", "-p", "sigma=0.2", "-p", "samples=2", "--target", "pred")
    assert other.exit_code != 0 and "params" in other.output and "--overwrite" in other.output
    ann = _run("precompute-saliency", "--store", store, "--source", "annotation.mask")
    assert ann.exit_code == 0, ann.output

    info = _run("cache", "info", store)
    assert info.exit_code == 0 and "teach_a.smoothgrad: complete" in info.output
    assert "energy pointing game" in info.output
    as_json = json.loads(_run("cache", "info", store, "--json").output)
    assert as_json["splits"]["train"]["sources"]["teach_a.smoothgrad"]["target"] == "pred"

    ok = _run("cache", "verify", store, "--sample", "1")
    assert ok.exit_code == 0 and "cache verified" in ok.output
    Path(store, "train/saliency/teach_a.smoothgrad/map/c/0/0/0/0").unlink()
    bad = _run("cache", "verify", store, "--source", "teach_a.smoothgrad")
    assert bad.exit_code == 1 and "chunk 0 missing" in bad.output

    h5 = tmp_path / "c.h5"
    assert _run("cache", "export", store, "--to", h5).exit_code == 0 and h5.is_file()
    png = tmp_path / "g.png"
    res = _run("show-saliency", "--store", store, "--source", "annotation.mask",
               "--n", "5", "--out", png)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clear_errors(tmp_path, teacher):
    missing = _run("cache", "info", tmp_path / "nope.zarr")
    assert missing.exit_code != 0 and "nope.zarr" in missing.output
    url = make_store(str(tmp_path / "plain.zarr"), annotations=False)
    ann = _run("precompute-saliency", "--store", url, "--source", "annotation.bbox")
    assert ann.exit_code != 0 and "annotations/bbox" in ann.output
    typo = _run("precompute-saliency", "--store", url, "--teacher", teacher, "--method", "gpb")
    assert typo.exit_code != 0 and "gbp" in typo.output
    bad_p = _run("precompute-saliency", "--store", url, "--teacher", teacher, "--method",
                 "grad", "-p", "oops")
    assert bad_p.exit_code != 0 and "key=value" in bad_p.output
    nosrc = _run("show-saliency", "--store", url, "--source", "t.grad", "--out", tmp_path / "x.png")
    assert nosrc.exit_code != 0 and "not in split" in nosrc.output

"""``salpipe train`` with stage-two methods on a tiny store with a cached source."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main

from .conftest import SOURCE


def _run(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *args], catch_exceptions=False)


def _base(store, out, method):
    return ["train", "--store", str(store), "--arch", "small_cnn", "--width", "8",
            "--epochs", "1", "--batch-size", "16", "--method", method, "--out", str(out)]


def test_train_sat_end_to_end(sal_store, tmp_path):
    out = tmp_path / "sat"
    res = _run(*_base(sal_store, out, "sat"), "--saliency", SOURCE,
               "--saliency", "annotation.mask", "-p", "transform=sign", "-p", "eps0=4/255")
    assert res.exit_code == 0, res.output
    side = json.loads((out / "model.json").read_text())
    assert side["method"] == "sat"
    assert side["params"]["transform"] == "sign" and side["params"]["eps0"] == 4 / 255
    # alpha resolved for the run's length (1 epoch) and recorded: 0.6 ** (20 / epochs)
    assert side["params"]["alpha"] == pytest.approx(0.6 ** 20)
    prov = side["saliency_sources"]
    assert set(prov) == {SOURCE, "annotation.mask"}
    assert prov[SOURCE]["teacher"] == "tiny_adv" and prov[SOURCE]["method"] == "gbp"
    assert prov["annotation.mask"]["method"] == "mask" and prov[SOURCE]["complete"]
    assert side["stream"] == "memory"
    assert (out / "model.pt").is_file()
    res = _run(*_base(sal_store, out, "sat"), "--saliency", SOURCE,
               "--saliency", "annotation.mask", "-p", "transform=sign", "-p", "eps0=4/255")
    assert res.exit_code == 0 and "skipped" in res.output


def test_missing_source_fails_before_training(sal_store, tmp_path):
    out = tmp_path / "x"
    res = _run(*_base(sal_store, out, "sat"), "--saliency", "resnet10_adv.gbp")
    assert res.exit_code != 0
    assert "resnet10_adv.gbp" in res.output and SOURCE in res.output
    assert not (out / "model.pt").exists() and not (out / "metrics.jsonl").exists()
    res = _run(*_base(sal_store, out, "pgd_sat"))
    assert res.exit_code != 0 and "--saliency" in res.output


@pytest.mark.parametrize("stream", ["chunks", "auto"])
def test_sip_at_with_masks_and_stream_modes(sal_store, tmp_path, stream):
    out = tmp_path / stream
    res = _run(*_base(sal_store, out, "sip_at"), "--saliency", "annotation.mask",
               "-p", "steps=1", "--stream", stream)
    assert res.exit_code == 0, res.output
    side = json.loads((out / "model.json").read_text())
    assert side["method"] == "sip_at"
    assert side["stream"] == ("memory" if stream == "auto" else stream)
    assert "annotation.mask" in side["saliency_sources"]

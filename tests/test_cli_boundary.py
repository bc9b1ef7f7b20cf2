"""The CLI's one error boundary (``Error: ...``, exit 1, no traceback) and fsspec stores
in every command that takes ``--store``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main


def _run(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *args])


@pytest.mark.parametrize("args", [
    ["train", "--store", "{tmp}/none.zarr", "--method", "standard", "--out", "{tmp}/r"],
    ["train-teacher", "--store", "{tmp}/none.zarr", "--mode", "std", "--out", "{tmp}/r"],
    ["evaluate", "--model", "{tmp}/no_run", "--store", "{tmp}/none.zarr",
     "--out", "{tmp}/r.parquet"],
    ["precompute-saliency", "--store", "{tmp}/none.zarr", "--source", "annotation.mask"],
    ["cache", "info", "{tmp}/none.zarr"],
    ["sad-calibrate", "--model", "{tmp}/no_run", "--store", "{tmp}/none.zarr",
     "--out", "{tmp}/s"],
    ["report", "--results", "{tmp}/none.parquet", "--out", "{tmp}/rep"],
])
def test_every_stage_error_is_one_line_through_the_boundary(args, tmp_path):
    res = _run(*[a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: "), res.output
    assert "Traceback" not in res.output
    assert "not found" in res.output or "no data set store" in res.output, res.output


def test_train_and_train_teacher_take_fsspec_urls(tmp_path):
    store = "memory://boundary/shapes.zarr"
    res = _run("prepare-data", "--dataset", "shapes", "--store", store,
               "-p", "n_train=64", "-p", "n_test=32", "-p", "resolution=16")
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "t.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 32\ntest_limit: 32\n")
    common = ["--store", store, "--arch", "small_cnn", "--width", "8", "--config", str(cfg)]
    res = _run("train-teacher", *common, "--mode", "std", "--out", str(tmp_path / "t"))
    assert res.exit_code == 0, res.output
    res = _run("train", *common, "--method", "standard", "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    for run in ("t", "s"):
        # the URL reaches the stage whole (click.Path once made it memory:/...)
        assert json.loads((tmp_path / run / "model.json").read_text())["store"] == store


@pytest.mark.parametrize("command", ["train", "sad-calibrate", "evaluate", "cache verify"])
def test_help_and_exit_codes_pass_the_boundary_untouched(command):
    # click's --help and ctx.exit() raise Exit (a RuntimeError): not an error to report
    res = _run(*command.split(), "--help")
    assert res.exit_code == 0 and "Usage:" in res.output and "Error" not in res.output

"""``salpipe train`` / ``train-teacher`` through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli import main


def _run(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *args], catch_exceptions=False)


def test_train_teacher_and_rerun(tiny_store, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 1\nbatch_size: 32\nopt:\n  lr: 0.05\n")
    args = [
        "train-teacher",
        "--store",
        str(tiny_store),
        "--arch",
        "small_cnn",
        "--width",
        "8",
        "--mode",
        "adv",
        "--config",
        str(cfg),
        "-p",
        "steps=1",
        "-p",
        "eps=4/255",
        "--out",
        str(tmp_path / "t"),
    ]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    side = json.loads((tmp_path / "t" / "model.json").read_text())
    assert side["method"] == "pgd_at" and side["params"]["eps"] == 4 / 255
    assert side["train"]["net"] == {"arch": "small_cnn", "width": 8}
    assert side["train"]["opt"]["lr"] == 0.05
    res = _run(*args)
    assert res.exit_code == 0 and "skipped" in res.output


def test_train_errors_name_the_problem(tiny_store, tmp_path):
    base = [
        "train",
        "--store",
        str(tiny_store),
        "--arch",
        "small_cnn",
        "--out",
        str(tmp_path / "x"),
        "--epochs",
        "1",
    ]
    res = _run(*base, "--method", "pgd_att")
    assert res.exit_code != 0 and "pgd_at" in res.output and "standard" in res.output
    res = _run(*base, "--method", "standard", "-s", "opt.lrr=0.1")
    assert res.exit_code != 0 and "opt.lrr" in res.output
    res = _run(*base, "--method", "pgd_at", "-p", "stpes=3")
    assert res.exit_code != 0 and "stpes" in res.output
    res = _run(
        "train",
        "--store",
        str(tmp_path / "none.zarr"),
        "--method",
        "standard",
        "--out",
        str(tmp_path / "y"),
    )
    assert res.exit_code != 0 and "none.zarr" in res.output


def test_set_overrides_the_config_file_and_unset_options_do_not_erase_it(tmp_path):
    from cli import _train_cfg

    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("epochs: 15\nopt: {lr: 0.1}\n")
    unset = {"net.arch": None, "epochs": None, "batch_size": None, "opt.lr": None, "seed": None}
    cfg = _train_cfg(cfg_file, unset, ("epochs=12", "opt.lr=0.05"))
    assert cfg.epochs == 12 and cfg.opt.lr == 0.05
    cfg = _train_cfg(cfg_file, {**unset, "epochs": 3}, ("epochs=12",))
    assert cfg.epochs == 3  # an explicit option beats -s

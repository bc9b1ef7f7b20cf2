"""sad-calibrate through the CLI, the SAD checkpoint format, load_sad_model."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pipeline.sad import SADModel
from pipeline.stages.sad_calibrate import load_sad_model


def _run(*args):
    from cli import main

    return CliRunner().invoke(main, ["--device", "cpu", "sad-calibrate", *map(str, args)],
                              catch_exceptions=False)


def test_cli_calibrates_writes_a_sad_checkpoint_and_is_idempotent(tmp_path, store,
                                                                   checkpoint):
    out = tmp_path / "small_sad"
    args = ["--model", checkpoint, "--store", store, "--out", out, "--ratio", "0.7",
            "-p", "steps=2", "-p", "eps=4/255", "--batch-size", "16", "--batches", "2"]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert "wrote sad" in res.output
    side = json.loads((out / "model.json").read_text())
    assert side["wrapper"] == {"name": "sad", "ratio": 0.7, "saliency": "grad",
                               "saliency_params": {}, "normalise": "maxabs",
                               "grad_mode": "exact", "add_saliency": True}
    assert side["method"] == "sad" and side["arch"] == "small_cnn"
    assert side["sad"]["config"]["attack_params"] == {"steps": 2, "eps": "4/255"}
    assert side["sad"]["base_run"] == checkpoint.name
    assert side["params"]["ratio"] == 0.7 and side["params"]["base_method"] == "standard"
    assert side["metrics"]["sad_calibration_batches"] == 2

    model, _ = load_sad_model(out, grad_mode="bpda")
    assert isinstance(model, SADModel) and model.spec.grad_mode == "bpda"
    assert model.spec.ratio == 0.7 and not model.training
    assert load_sad_model(out)[0].spec.grad_mode == "exact"
    # same weights as the base, other BN statistics
    plain = torch.load(checkpoint / "model.pt", weights_only=True)
    new = torch.load(out / "model.pt", weights_only=True)
    assert torch.equal(plain["fc.weight"], new["fc.weight"])
    assert not torch.equal(plain["body.1.running_mean"], new["body.1.running_mean"])

    again = _run(*args)
    assert again.exit_code == 0 and "skipped" in again.output
    other = _run(*args[:-2], "--batches", "1")
    assert other.exit_code != 0 and "--overwrite" in other.output
    assert _run(*args[:-2], "--batches", "1", "--overwrite").exit_code == 0


def test_cli_ablations_record_their_variant(tmp_path, store, checkpoint):
    for flag, variant in (("--no-bn-update", "sad_saliency_only"),
                          ("--no-saliency", "sad_bn_only")):
        out = tmp_path / variant
        res = _run("--model", checkpoint, "--store", store, "--out", out, flag,
                   "-p", "steps=1", "--batches", "1", "--batch-size", "16")
        assert res.exit_code == 0, res.output
        side = json.loads((out / "model.json").read_text())
        assert side["method"] == variant and side["sad"]["variant"] == variant
        assert side["wrapper"]["add_saliency"] is (variant != "sad_bn_only")


def test_cli_errors_are_clear(tmp_path, store, checkpoint):
    res = _run("--model", tmp_path / "missing", "--store", store, "--out", tmp_path / "o")
    assert res.exit_code != 0 and "missing" in res.output
    res = _run("--model", checkpoint, "--store", store, "--out", tmp_path / "o",
               "--no-bn-update", "--no-saliency")
    assert res.exit_code != 0 and "neither" in res.output
    res = _run("--model", checkpoint, "--store", store, "--out", tmp_path / "o",
               "--attack", "nope")
    assert res.exit_code != 0 and "unknown attack" in res.output
    # names are checked before anything is read, with or without a BN update
    res = _run("--model", checkpoint, "--store", store, "--out", tmp_path / "o",
               "--no-bn-update", "--saliency", "nope")
    assert res.exit_code != 0 and "unknown saliency method 'nope'" in res.output
    assert not (tmp_path / "o").exists()


def test_at_sad_keeps_the_base_method_and_refuses_rewrapping(tmp_path, store, checkpoint):
    side = json.loads((checkpoint / "model.json").read_text())
    side["method"] = "pgd_at"
    (checkpoint / "model.json").write_text(json.dumps(side))
    out = tmp_path / "at_sad"
    assert _run("--model", checkpoint, "--store", store, "--out", out, "-p", "steps=1",
                "--batches", "1", "--batch-size", "16").exit_code == 0
    side = json.loads((out / "model.json").read_text())
    assert side["method"] == "at_sad" and side["params"]["base_method"] == "pgd_at"
    res = _run("--model", out, "--store", store, "--out", tmp_path / "twice")
    assert res.exit_code != 0 and "already a wrapped" in res.output


@pytest.fixture
def seen(monkeypatch):
    """The SadConfig the CLI hands to the stage (the stage itself is not run)."""
    got = {}

    def fake(model_dir, store, out, cfg, **kw):
        got["cfg"] = cfg
        return {"skipped": True}

    monkeypatch.setattr("pipeline.stages.sad_calibrate.run_sad_calibrate", fake)
    return got


def _cli_cfg(seen, *args):
    res = _run("--model", "m", "--store", "s", "--out", "o", *args)
    assert res.exit_code == 0, res.output
    return seen.pop("cfg")


def test_cli_without_options_has_the_sweep_defaults(seen):
    from pipeline.config import from_dict
    from pipeline.config.sad import SadConfig
    from pipeline.config.sweep import SadModelSpec

    entry = from_dict(SadModelSpec, {"base": "standard"}, "sad.sad")
    assert _cli_cfg(seen) == entry.config() == SadConfig()


def test_cli_set_overrides_any_setting_and_options_beat_it(seen):
    from pipeline.config.sad import SadConfig

    cfg = _cli_cfg(seen, "-s", "ratio=0.5", "-s", "saliency=gbp", "-s", "saliency_params.n=5",
                   "-s", "attack_params.steps=3", "-p", "eps=4/255", "--seed", "2",
                   "-s", "batch_size=16", "--batch-size", "8", "--no-bn-update")
    assert cfg == SadConfig(ratio=0.5, saliency="gbp", saliency_params={"n": 5},
                            attack_params={"steps": 3, "eps": "4/255"}, seed=2,
                            batch_size=8, bn_update=False)
    assert cfg.grad_mode == "bpda"  # the policy of SadConfig: exact only for grad
    res = _run("--model", "m", "--store", "s", "--out", "o", "-s", "ratoi=0.5")
    assert res.exit_code != 0 and "did you mean 'ratio'" in res.output


@pytest.mark.parametrize("sweep", ["paper", "cifar_quick"])
def test_sweep_sad_args_rebuild_the_entry_with_the_job_seed(seen, sweep):
    import shlex
    from dataclasses import replace
    from pathlib import Path

    from pipeline.config.dag import Dag

    sweeps = Path(__file__).resolve().parents[2] / "config" / "sweeps"
    dag = Dag.from_config({"sweep": sweep}, sweeps)
    assert dag.sweep.sad
    for name, entry in dag.sweep.sad.items():
        args = dag.sad_args(name, 2)  # the words of the command line
        words = shlex.split(args) if isinstance(args, str) else list(args)
        assert words[words.index("--seed") + 1] == "2"
        assert _cli_cfg(seen, *words) == replace(entry.config(), seed=2)


def test_load_sad_model_refuses_a_plain_checkpoint(checkpoint):
    with pytest.raises(ValueError, match="not a SAD model"):
        load_sad_model(checkpoint)


def test_wrap_model_hook(bn_model):
    from pipeline.stages.loading import wrap_model

    assert wrap_model(bn_model, {}) is bn_model
    sad = wrap_model(bn_model, {"wrapper": {"name": "sad", "ratio": 0.5}})
    assert isinstance(sad, SADModel) and sad.network is bn_model and sad.spec.ratio == 0.5
    with pytest.raises(ValueError, match="wrapper"):
        wrap_model(bn_model, {"wrapper": {"ratio": 0.5}})


def test_load_model_returns_the_whole_defence(tmp_path, store, checkpoint):
    from pipeline.sad import SadConfig
    from pipeline.stages.loading import load_model
    from pipeline.stages.sad_calibrate import run_sad_calibrate

    out = tmp_path / "sad"
    run_sad_calibrate(checkpoint, store, out, SadConfig(
        ratio=0.6, attack_params={"steps": 1}, batch_size=16, batches=1), device="cpu")
    model, meta = load_model(out)
    assert isinstance(model, SADModel) and model.spec.ratio == 0.6
    assert meta["wrapper"]["name"] == "sad" and not model.training
    plain, _ = load_model(out, wrap=False)
    assert not isinstance(plain, SADModel)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(model.network(x), plain(x))
    assert not isinstance(load_model(checkpoint)[0], SADModel)


def _snapshot(folder):
    """Every file under ``folder`` (or the file itself) and its bytes."""
    from pathlib import Path

    folder = Path(folder)
    if folder.is_file():
        return {".": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _base_args(checkpoint, store):
    return ["--model", checkpoint, "--store", store, "-p", "steps=1", "--batches", "1",
            "--batch-size", "16"]


def test_out_that_is_not_a_sad_calibration_is_refused_and_kept(tmp_path, store,
                                                               checkpoint):
    import shutil

    run_copy = tmp_path / "a_training_run"
    shutil.copytree(checkpoint, run_copy)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("keep me")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me too")
    for out, said in ((checkpoint, "not a SAD calibration"),
                      (run_copy, "not a SAD calibration"),
                      (tmp_path, "holds no SAD checkpoint"),  # the parent of everything
                      (notes, "holds no SAD checkpoint"),
                      (a_file, "is a file")):
        before = _snapshot(out)
        for extra in ([], ["--overwrite"]):
            res = _run(*_base_args(checkpoint, store), "--out", out, *extra)
            assert res.exit_code == 1, (out, res.output)
            assert said in res.output and str(out) in res.output, res.output
            assert "Traceback" not in res.output
            assert _snapshot(out) == before, out  # nothing deleted, nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _run(*_base_args(checkpoint, store), "--out", empty)
    assert res.exit_code == 0 and (empty / "model.json").is_file(), res.output


def test_overwrite_never_deletes_other_files_beside_a_sad_checkpoint(tmp_path, store,
                                                                     checkpoint):
    out = tmp_path / "sad"
    assert _run(*_base_args(checkpoint, store), "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    res = _run(*_base_args(checkpoint, store)[:-4], "--batches", "2", "--batch-size",
               "16", "--out", out, "--overwrite")
    assert res.exit_code == 1 and "notes.txt" in res.output, res.output
    assert _snapshot(out) == before
    (out / "notes.txt").unlink()
    res = _run(*_base_args(checkpoint, store)[:-4], "--batches", "2", "--batch-size",
               "16", "--out", out, "--overwrite")
    assert res.exit_code == 0, res.output


def test_same_calibration_with_a_broken_model_pt_is_not_skipped(tmp_path, store,
                                                                checkpoint):
    out = tmp_path / "sad"
    assert _run(*_base_args(checkpoint, store), "--out", out).exit_code == 0
    (out / "model.pt").write_bytes(b"broken")
    before = _snapshot(out)
    res = _run(*_base_args(checkpoint, store), "--out", out)
    assert res.exit_code == 1 and "does not match" in res.output
    assert "--overwrite" in res.output and _snapshot(out) == before
    assert _run(*_base_args(checkpoint, store), "--out", out, "--overwrite").exit_code == 0
    load_sad_model(out)


def test_bad_inputs_are_named_before_anything_is_written(tmp_path, store, checkpoint):
    import os

    from pipeline.core.io import sha256_file

    out = tmp_path / "o"
    res = _run(*_base_args(checkpoint, store), "--out", out, "--split", "val")
    assert res.exit_code == 1 and "no split 'val'" in res.output and str(store) in res.output
    assert not out.exists()

    def fix_sha():
        side = json.loads((checkpoint / "model.json").read_text())
        side["sha256"] = sha256_file(checkpoint / "model.pt")
        (checkpoint / "model.json").write_text(json.dumps(side))

    good = (checkpoint / "model.pt").read_bytes()
    (checkpoint / "model.pt").write_bytes(good[: len(good) // 2])
    fix_sha()
    res = _run(*_base_args(checkpoint, store), "--out", out)
    assert res.exit_code == 1 and str(checkpoint / "model.pt") in res.output
    assert "truncated" in res.output and not out.exists()

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"fc.weight": Evil()}, checkpoint / "model.pt")
    fix_sha()
    res = _run(*_base_args(checkpoint, store), "--out", out)
    assert res.exit_code == 1 and "refused to load" in res.output
    assert str(checkpoint / "model.pt") in res.output
    assert not marker.exists() and not out.exists()

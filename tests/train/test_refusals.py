"""Every bad input a clear error naming the file, nothing lost: checkpoints and resume
states that are missing, truncated, corrupt, foreign or unsafe; runs refused before a byte
is written; NaN/Inf stopped where they enter (config values, losses, weights)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import main
from pipeline.core.io import sha256_file
from pipeline.models import build_model
from pipeline.models.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_network,
    save_checkpoint,
)
from pipeline.stages.loading import load_model
from pipeline.stages.train import run_train
from pipeline.train.config import OptConfig, TrainConfig, train_config_from
from pipeline.train.loop import TrainingDivergedError
from pipeline.train.standard import Standard

META = {"arch": "small_cnn", "width": 8, "num_classes": 4, "mean": [0.5] * 3,
        "std": [0.25] * 3, "dataset": "tiny", "dataset_fingerprint": "ab" * 32,
        "method": "standard", "params": {}, "train": {}, "epoch": 1}
CFG = {"epochs": 2, "batch_size": 16, "device": "cpu", "opt": {"lr": 0.05},
       "net": {"arch": "small_cnn", "width": 8}}  # tiny store: 4 steps per epoch


def _run(*args):
    return CliRunner().invoke(main, ["--device", "cpu", *map(str, args)],
                              catch_exceptions=False)


def _train_args(store, out, method="standard", *more):
    return ["train", "--store", store, "--arch", "small_cnn", "--width", "8",
            "--epochs", "2", "--batch-size", "16", "-s", "opt.lr=0.05", "--method",
            method, "--out", out, *more]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Evil:
    """Unpickling this would run a shell command that creates ``MARKER``."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(tmp_path) -> tuple[Evil, Path]:
    marker = tmp_path / "PWNED"
    evil = Evil()
    evil.marker = str(marker)
    return evil, marker


# -- model.pt / model.json ------------------------------------------------------------


@pytest.fixture
def ckpt(tmp_path) -> Path:
    save_checkpoint(tmp_path / "run", build_model("small_cnn", 4, width=8), META)
    return tmp_path / "run"


def _fix_sidecar_sha(run: Path) -> None:
    """Make the sidecar's sha256 match ``model.pt`` (so only the load can catch it)."""
    side = json.loads((run / "model.json").read_text())
    side["sha256"] = sha256_file(run / "model.pt")
    (run / "model.json").write_text(json.dumps(side))


def test_missing_model_pt_and_sidecar_named(tmp_path, ckpt):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_network(tmp_path / "nope")
    (ckpt / "model.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.json"):
        load_network(ckpt)


@pytest.mark.parametrize("keep", [0.5, 10, 0])
def test_truncated_model_pt_with_matching_sha_is_named(ckpt, keep):
    data = (ckpt / "model.pt").read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    (ckpt / "model.pt").write_bytes(data[:n])
    _fix_sidecar_sha(ckpt)
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_network(ckpt)
    assert str(ckpt / "model.pt") in str(e.value)
    assert not isinstance(e.value, UnsafeCheckpointError)


def test_sidecar_sha256_mismatch_names_both_files(ckpt):
    data = bytearray((ckpt / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (ckpt / "model.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256") as e:
        load_network(ckpt)
    assert str(ckpt / "model.pt") in str(e.value) and "model.json" in str(e.value)


def test_file_that_is_not_a_checkpoint(ckpt):
    (ckpt / "model.pt").write_bytes(b"hello, I am not a checkpoint\n" * 10)
    _fix_sidecar_sha(ckpt)
    with pytest.raises(CheckpointError, match=r"not a torch checkpoint") as e:
        load_network(ckpt)
    assert str(ckpt / "model.pt") in str(e.value)
    torch.save([1, 2, 3], ckpt / "model.pt")  # a torch file, but no state_dict
    _fix_sidecar_sha(ckpt)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_network(ckpt)
    torch.save({"fc.weight": torch.zeros(3)}, ckpt / "model.pt")  # another model
    _fix_sidecar_sha(ckpt)
    with pytest.raises(CheckpointError, match="does not fit arch"):
        load_network(ckpt)


@pytest.mark.parametrize("how", ["torch_save", "raw_pickle", "foreign_class"])
def test_unsafe_pickle_is_refused_and_never_run(tmp_path, ckpt, how):
    evil, marker = _evil(tmp_path)
    if how == "torch_save":
        torch.save({"fc.weight": evil}, ckpt / "model.pt")
    elif how == "raw_pickle":
        (ckpt / "model.pt").write_bytes(pickle.dumps({"fc.weight": evil}))
    else:
        torch.save({"fc.weight": torch.zeros(1), "x": Path("not/allowlisted")},
                   ckpt / "model.pt")
    _fix_sidecar_sha(ckpt)
    for load in (load_network, load_model):
        with pytest.raises(UnsafeCheckpointError, match="refused to load") as e:
            load(ckpt)
        assert str(ckpt / "model.pt") in str(e.value)
    assert not marker.exists()  # never executed


def test_unsafe_checkpoint_through_the_cli_is_one_error_line(tmp_path, ckpt):
    import zarr
    from tiny_store import write_tiny_store

    store = write_tiny_store(tmp_path / "tiny.zarr")
    side = json.loads((ckpt / "model.json").read_text())
    side["dataset_fingerprint"] = zarr.open_group(str(store), mode="r").attrs["fingerprint"]
    (ckpt / "model.json").write_text(json.dumps(side))
    evil, marker = _evil(tmp_path)
    torch.save({"fc.weight": evil}, ckpt / "model.pt")
    _fix_sidecar_sha(ckpt)
    res = _run("sad-calibrate", "--model", ckpt, "--store", store, "--out",
               tmp_path / "sad", "-p", "steps=1", "--batches", "1", "--batch-size", "16")
    assert res.exit_code == 1, res.output
    assert "Error: refused to load" in res.output and str(ckpt / "model.pt") in res.output
    assert "Traceback" not in res.output and not marker.exists()
    assert not (tmp_path / "sad").exists()


def test_bad_sidecars_are_named(ckpt):
    side = ckpt / "model.json"
    good = side.read_text()
    side.write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.json is not valid JSON"):
        load_network(ckpt)
    side.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"model\.json holds a JSON list"):
        load_network(ckpt)
    side.write_text(json.dumps({k: v for k, v in json.loads(good).items() if k != "arch"}))
    with pytest.raises(ValueError, match=r"model\.json lacks arch"):
        load_network(ckpt)
    side.write_text(json.dumps({**json.loads(good), "arch": "no_such_arch"}))
    with pytest.raises(ValueError, match=r"model\.json describes no buildable model"):
        load_network(ckpt)
    side.write_text(json.dumps({**json.loads(good), "wrapper": {"name": "nope"}}))
    with pytest.raises(ValueError, match=r"model\.json: bad 'wrapper' block.*nope"):
        load_model(ckpt)


# -- resume.pt --------------------------------------------------------------------------


class Killed(Exception):
    """Stands in for a SIGKILL mid-run (the files stay as they were at that moment)."""


def _killed_run(monkeypatch, store, out, at_step, cfg=None, **kw):
    """A ``standard`` run that dies at optimiser step ``at_step`` (resume state every
    step), leaving ``resume.pt`` + ``config.yaml`` (and ``model.json`` after epoch 1)."""
    real = Standard.batch_loss

    def dying(self, model, batch, ctx):
        if ctx.step == at_step:
            raise Killed
        return real(self, model, batch, ctx)

    monkeypatch.setattr(Standard, "batch_loss", dying)
    with pytest.raises(Killed):
        run_train(store, "standard", {}, train_config_from(
            {**CFG, "checkpoint_every": 1, **(cfg or {})}), out, **kw)
    monkeypatch.setattr(Standard, "batch_loss", real)
    assert (out / "resume.pt").is_file() and (out / "config.yaml").is_file()
    return _snapshot(out)


def test_truncated_resume_pt_named_with_delete_hint(tiny_store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    _killed_run(monkeypatch, tiny_store, out, at_step=2)
    data = (out / "resume.pt").read_bytes()
    (out / "resume.pt").write_bytes(data[: len(data) // 3])
    before = _snapshot(out)
    res = _run(*_train_args(tiny_store, out), "-s", "checkpoint_every=1")
    assert res.exit_code == 1, res.output
    assert f"Error: resume state {out / 'resume.pt'}" in res.output
    assert "truncated" in res.output and f"delete {out / 'resume.pt'}" in res.output
    assert "trained:" not in res.output and "Traceback" not in res.output
    assert _snapshot(out) == before


def test_unsafe_resume_pt_refused_and_never_run(tiny_store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    _killed_run(monkeypatch, tiny_store, out, at_step=2)
    evil, marker = _evil(tmp_path)
    state = torch.load(out / "resume.pt", weights_only=True)
    torch.save({**state, "acc": evil}, out / "resume.pt")
    before = _snapshot(out)
    res = _run(*_train_args(tiny_store, out), "-s", "checkpoint_every=1")
    assert res.exit_code == 1, res.output
    assert "Error: refused to load resume state" in res.output
    assert str(out / "resume.pt") in res.output and "delete" in res.output
    assert not marker.exists() and _snapshot(out) == before


def test_resume_pt_that_is_not_one(tiny_store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    _killed_run(monkeypatch, tiny_store, out, at_step=2)
    state = torch.load(out / "resume.pt", weights_only=True)
    cfg = train_config_from({**CFG, "checkpoint_every": 1})
    for bad, match in (([1, 2], "holds a list"),
                       ({**state, "key": "{nope"}, "unreadable run key"),
                       ({"key": state["key"]}, "lacks model, optimizer"),
                       ({**state, "model": {"x": torch.zeros(1)}}, "does not fit this run")):
        torch.save(bad, out / "resume.pt")
        with pytest.raises(CheckpointError, match=match) as e:
            run_train(tiny_store, "standard", {}, cfg, out)
        assert str(out / "resume.pt") in str(e.value) and "delete" in str(e.value)


def test_torn_last_metrics_line_is_dropped_on_resume(tiny_store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    _killed_run(monkeypatch, tiny_store, out, at_step=6)  # epoch 0 logged, mid epoch 1
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 1, "lo')  # killed mid-append
    run_train(tiny_store, "standard", {}, train_config_from({**CFG, "checkpoint_every": 1}),
              out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    (out / "metrics.jsonl").write_text('garbage\n{"epoch": 0}\n')
    other = tmp_path / "s"
    _killed_run(monkeypatch, tiny_store, other, at_step=6)
    (other / "metrics.jsonl").write_text('garbage\n{"epoch": 0}\n')
    before = _snapshot(other)
    with pytest.raises(ValueError, match=r"metrics\.jsonl line 1"):
        run_train(tiny_store, "standard", {},
                  train_config_from({**CFG, "checkpoint_every": 1}), other)
    assert _snapshot(other) == before


# -- refuse before writing ----------------------------------------------------------------


@pytest.mark.parametrize("at_step", [2, 6])  # before / after the first epoch's sidecar
def test_unfinished_run_of_other_config_refused_byte_identical(tiny_store, tmp_path,
                                                               monkeypatch, at_step):
    out = tmp_path / "r"
    _killed_run(monkeypatch, tiny_store, out, at_step=at_step)
    assert (out / "model.json").is_file() == (at_step > 4)
    before = _snapshot(out)
    res = _run(*_train_args(tiny_store, out, "pgd_at", "-p", "steps=1"))
    assert res.exit_code == 1, res.output
    assert "another configuration" in res.output and "method" in res.output
    assert "Traceback" not in res.output
    assert _snapshot(out) == before  # config.yaml too: nothing written
    # the same configuration resumes it
    res = _run(*_train_args(tiny_store, out), "-s", "checkpoint_every=1")
    assert res.exit_code == 0 and "trained:" in res.output, res.output


def test_finished_run_of_other_config_refused_byte_identical(tiny_store, tmp_path):
    out = tmp_path / "r"
    assert _run(*_train_args(tiny_store, out)).exit_code == 0
    before = _snapshot(out)
    for extra in (["-s", "seed=3"], ["--lr", "0.01"]):
        res = _run(*_train_args(tiny_store, out), *extra)
        assert res.exit_code == 1 and "finished run with another configuration" in res.output
        assert _snapshot(out) == before
    res = _run(*_train_args(tiny_store, out, "pgd_at"))
    assert res.exit_code == 1 and _snapshot(out) == before


def test_out_that_is_a_file_or_a_broken_finished_run(tiny_store, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    res = _run(*_train_args(tiny_store, f))
    assert res.exit_code == 1 and "is a file" in res.output and f.read_text() == "keep me"
    out = tmp_path / "r"
    assert _run(*_train_args(tiny_store, out)).exit_code == 0
    (out / "model.pt").write_bytes(b"broken")
    before = _snapshot(out)
    res = _run(*_train_args(tiny_store, out))
    assert res.exit_code == 1 and "does not match" in res.output and "delete" in res.output
    assert _snapshot(out) == before


def test_bad_inputs_write_nothing(tiny_store, tmp_path):
    out = tmp_path / "x"
    for extra in (["--method", "nope"], ["-p", "stpes=1"], ["-s", "opt.lrr=1"],
                  ["--saliency", "nope.gbp"], ["--arch", "no_such_arch"],
                  ["-s", "test_split=nope"]):
        args = _train_args(tiny_store, out)
        if extra[0] in ("--method", "--arch"):
            i = args.index(extra[0])
            args[i + 1] = extra[1]
        else:
            args += extra
        res = _run(*args)
        assert res.exit_code != 0 and "Traceback" not in res.output, (extra, res.output)
        assert not out.exists(), extra
    res = _run(*_train_args(tmp_path / "none.zarr", out))
    assert res.exit_code != 0 and "none.zarr" in res.output and not out.exists()


def test_config_yaml_names_the_command(tiny_store, tmp_path):
    import yaml

    out = tmp_path / "r"
    assert _run(*_train_args(tiny_store, out)).exit_code == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["command"] == "train" and cfg["method"] == "standard"
    assert cfg["train"]["opt"]["lr"] == 0.05 and cfg["dataset_fingerprint"]
    res = _run("train-teacher", "--store", tiny_store, "--arch", "small_cnn", "--width",
               "8", "--epochs", "1", "--batch-size", "16", "--mode", "std", "--out",
               tmp_path / "t")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    assert cfg["command"] == "train-teacher" and cfg["mode"] == "std"
    assert cfg["method"] == "standard"


def test_sparse_teacher_checks_its_out_before_the_dense_run(tiny_store, tmp_path):
    out = tmp_path / "s"
    assert _run(*_train_args(tiny_store, out)).exit_code == 0  # a plain run there
    before = _snapshot(out)
    res = _run("train-teacher", "--store", tiny_store, "--arch", "small_cnn", "--width",
               "8", "--epochs", "1", "--batch-size", "16", "--mode", "sparse", "--out", out)
    assert res.exit_code == 1 and "another configuration" in res.output, res.output
    assert _snapshot(out) == before and not (out / "dense").exists()


# -- NaN and Inf ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan"])
def test_non_finite_config_values_refused(tiny_store, tmp_path, value):
    out = tmp_path / "x"
    res = _run(*_train_args(tiny_store, out), "-s", f"opt.lr={value}")
    assert res.exit_code != 0 and "opt.lr" in res.output, res.output
    assert "trained:" not in res.output and not out.exists()


def test_non_finite_values_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"opt\.lr"):
        TrainConfig(opt=OptConfig(lr=float("nan")))
    with pytest.raises(ValueError, match=r"sched\.gamma"):
        train_config_from({"sched": {"gamma": float("inf")}})
    with pytest.raises(ValueError, match=r"opt\.betas\[1\]"):
        train_config_from({"opt": {"betas": [0.9, float("nan")]}})


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_state(
        tiny_store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    cfg = train_config_from(CFG)  # resume state at epoch ends only
    real = Standard.batch_loss

    def nan_at_step_5(self, model, batch, ctx):
        loss = real(self, model, batch, ctx)
        if ctx.step == 5:  # epoch 2, batch 2
            return type(loss)(loss.loss * float("nan"), loss.logits)
        return loss

    monkeypatch.setattr(Standard, "batch_loss", nan_at_step_5)
    with pytest.raises(TrainingDivergedError) as e:
        run_train(tiny_store, "standard", {}, cfg, out)
    msg = str(e.value)
    assert "loss is nan" in msg and "epoch 2/2" in msg and "step 5" in msg
    assert str(out / "resume.pt") in msg and "end of epoch 1, step 4" in msg
    state = torch.load(out / "resume.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 0, 4)
    assert all(torch.isfinite(v).all() for v in state["model"].values()
               if v.is_floating_point())
    side = json.loads((out / "model.json").read_text())
    assert side["complete"] is False and side["epoch"] == 1  # last good model kept
    model, _ = load_network(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [0]
    # the kept state resumes: without the fault the run completes
    monkeypatch.setattr(Standard, "batch_loss", real)
    res = run_train(tiny_store, "standard", {}, cfg, out)
    assert not res["skipped"] and json.loads((out / "model.json").read_text())["complete"]


def test_non_finite_weights_are_never_saved(tiny_store, tmp_path, monkeypatch):
    out = tmp_path / "r"
    real = Standard.batch_loss

    def poison_last_step(self, model, batch, ctx):
        loss = real(self, model, batch, ctx)
        if ctx.step == 3:  # the loss is finite, the weights after the step are not
            with torch.no_grad():
                model.fc.bias.fill_(float("inf"))
        return loss

    monkeypatch.setattr(Standard, "batch_loss", poison_last_step)
    cfg = train_config_from({**CFG, "opt": {"lr": 0.05, "momentum": 0.0,
                                            "weight_decay": 0.0}})
    with pytest.raises(TrainingDivergedError, match="weights are not finite.*epoch 1/2"):
        run_train(tiny_store, "standard", {}, cfg, out)
    assert not (out / "model.pt").exists() and not (out / "resume.pt").exists()
    assert not (out / "metrics.jsonl").exists()


def test_diverging_lr_through_the_cli(tiny_store, tmp_path):
    out = tmp_path / "r"
    res = _run(*_train_args(tiny_store, out), "--lr", "1e30", "-s", "sched.name=constant")
    assert res.exit_code == 1, res.output
    assert "Error: training" in res.output and "diverged" in res.output
    assert "epoch 1/2" in res.output and "step " in res.output
    assert "trained:" not in res.output and "Traceback" not in res.output
    assert not (out / "model.pt").exists()


def test_os_error_of_torch_load_is_named(ckpt, monkeypatch):
    """torch.load can fail on a truncated file with ``OSError: [Errno 22]`` that names no
    file; the error names it."""
    def einval(*a, **k):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(torch, "load", einval)
    with pytest.raises(CheckpointError, match=r"OSError.*truncated") as e:
        load_network(ckpt)
    assert str(ckpt / "model.pt") in str(e.value)

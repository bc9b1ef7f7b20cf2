"""The loop: determinism, exact resume after a real SIGKILL, idempotence, refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny_store import write_tiny_store

from pipeline.config import ConfigError
from pipeline.models.checkpoint import CheckpointMismatchError
from pipeline.stages.loading import load_model
from pipeline.stages.train import check_checkpoint_for, run_train, run_train_teacher
from pipeline.train.config import SchedConfig, lr_multiplier, train_config_from

REPO = Path(__file__).resolve().parents[2]
CFG = {
    "epochs": 2,
    "batch_size": 16,
    "device": "cpu",
    "opt": {"lr": 0.05},
    "aug": {"crop_padding": 2, "flip": True},
    "net": {"arch": "small_cnn", "width": 8},
}
METHOD, PARAMS = "pgd_at_uniform", {"steps": 1}  # uses the global RNG and ctx.generator


def _state(out):
    return torch.load(Path(out) / "model.pt", weights_only=True)


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_weights(tiny_store, tmp_path):
    cfg = train_config_from(CFG)
    run_train(tiny_store, METHOD, PARAMS, cfg, tmp_path / "a")
    run_train(tiny_store, METHOD, PARAMS, cfg, tmp_path / "b")
    _assert_same(_state(tmp_path / "a"), _state(tmp_path / "b"))
    other = train_config_from({**CFG, "seed": 1})
    run_train(tiny_store, METHOD, PARAMS, other, tmp_path / "c")
    assert not torch.equal(
        _state(tmp_path / "a")["fc.weight"], _state(tmp_path / "c")["fc.weight"]
    )
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["epoch"] for r in rows] == [0, 1]
    for key in ("loss", "train_acc", "test_acc", "epoch_seconds", "images_per_s"):
        assert rows[-1][key] is not None
    assert (tmp_path / "a" / "config.yaml").is_file()
    assert not (tmp_path / "a" / "resume.pt").exists()


CHILD = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from pipeline.train.pgd_at_uniform import PGDATUniform
from pipeline.stages.train import run_train
from pipeline.train.config import train_config_from

real = PGDATUniform.batch_loss

def killing(self, model, batch, ctx):
    if ctx.step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)  # a real, unclean death mid-epoch
    return real(self, model, batch, ctx)

PGDATUniform.batch_loss = killing
run_train({store!r}, {method!r}, {params!r}, train_config_from({cfg!r}), {out!r})
"""


def test_kill_and_resume_is_bit_exact(tiny_store, tmp_path):
    cfg = {
        **CFG,
        "checkpoint_every": 3,
    }  # 4 steps/epoch: resume states at steps 3, 4, 6
    out = tmp_path / "killed"
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(CHILD).format(
            kill_at=7,
            store=str(tiny_store),
            method=METHOD,
            params=PARAMS,
            cfg=cfg,
            out=str(out),
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = torch.load(out / "resume.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 6)  # mid-epoch
    assert not json.loads((out / "model.json").read_text())["complete"]

    run_train(tiny_store, METHOD, PARAMS, train_config_from(cfg), out)  # resumes
    run_train(tiny_store, METHOD, PARAMS, train_config_from(CFG), tmp_path / "whole")
    _assert_same(_state(out), _state(tmp_path / "whole"))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]


def test_idempotent_and_refuses_other_config(tiny_store, tmp_path, caplog):
    cfg = train_config_from({**CFG, "epochs": 1})
    run_train(tiny_store, "standard", {}, cfg, tmp_path / "r")
    before = (tmp_path / "r" / "model.pt").stat().st_mtime_ns
    with caplog.at_level("INFO"):
        res = run_train(tiny_store, "standard", {}, cfg, tmp_path / "r")
    assert res["skipped"] and "nothing to do" in caplog.text
    assert (tmp_path / "r" / "model.pt").stat().st_mtime_ns == before
    other = train_config_from({**CFG, "epochs": 1, "opt": {"lr": 0.01}})
    with pytest.raises(ValueError, match="train.opt.lr"):
        run_train(tiny_store, "standard", {}, other, tmp_path / "r")


def test_resume_state_of_other_config_refused(tiny_store, tmp_path):
    from pipeline.models.checkpoint import atomic_torch_save

    out = tmp_path / "r"
    out.mkdir()
    atomic_torch_save({"key": json.dumps({"train": {"seed": 5}})}, out / "resume.pt")
    with pytest.raises(ValueError, match="another configuration.*resume.pt"):
        run_train(
            tiny_store, "standard", {}, train_config_from({**CFG, "epochs": 1}), out
        )


def test_refuses_checkpoint_of_other_data_or_arch(tiny_store, tmp_path):
    cfg = train_config_from({**CFG, "epochs": 1})
    run_train(tiny_store, "standard", {}, cfg, tmp_path / "r")
    other = write_tiny_store(tmp_path / "other.zarr", seed=9)
    check_checkpoint_for(tiny_store, tmp_path / "r", arch="small_cnn")
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        check_checkpoint_for(other, tmp_path / "r")
    with pytest.raises(CheckpointMismatchError, match="resnet10"):
        load_model(tmp_path / "r", expect_arch="resnet10")


def test_config_typos_name_the_key():
    with pytest.raises(ConfigError, match=r"train\.opt\.lrr.*did you mean 'lr'"):
        train_config_from({"opt": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        train_config_from({"epochs": "ten"})
    with pytest.raises(ConfigError, match=r"train\.sched\.name.*allowed values"):
        train_config_from({"sched": {"name": "cosin"}})
    with pytest.raises(ConfigError, match=r"train\.bn_mod"):
        train_config_from({}, {"bn_mod": "eval"})
    assert train_config_from({}, {"opt.lr": 0.3, "epochs": None}).opt.lr == 0.3


def test_schedules():
    f = lambda s, step: lr_multiplier(s, step, steps_per_epoch=10, epochs=10)
    one = SchedConfig(name="onecycle", pct_start=0.2)
    assert f(one, 0) == 0 and f(one, 20) == pytest.approx(1) and f(one, 100) == 0
    assert f(SchedConfig(name="cosine"), 0) == 1 and f(
        SchedConfig(name="cosine"), 50
    ) == pytest.approx(0.5)
    ms = SchedConfig(name="multistep", milestones=(0.5, 0.75), gamma=0.1)
    assert [f(ms, s) for s in (49, 50, 75)] == pytest.approx([1, 0.1, 0.01])
    pw = SchedConfig(name="piecewise", knots=(0, 5, 10), values=(0, 1, 0))
    assert f(pw, 25) == pytest.approx(0.5) and f(pw, 50) == pytest.approx(1)
    assert f(SchedConfig(name="constant", warmup_epochs=1), 4) == pytest.approx(0.5)


def test_sparse_teacher_holds_mask(tiny_store, tmp_path):
    from pipeline.models.prune import magnitude_masks, prunable

    cfg = train_config_from({**CFG, "epochs": 1})
    run_train_teacher(tiny_store, "small_cnn", "sparse", tmp_path / "s", cfg, width=8)
    dense, _ = load_model(tmp_path / "s" / "dense")
    masks = magnitude_masks(dense, 0.95)
    model, side = load_model(tmp_path / "s")
    assert (
        side["sparsity"] == pytest.approx(0.95, abs=1e-3)
        and side["prune"]["sparsity"] == 0.95
    )
    weights = prunable(model)
    for name, m in masks.items():
        assert torch.all(weights[name][m == 0] == 0), name  # pruned stay pruned
    kept_changed = any(
        not torch.equal(weights[n][m == 1], prunable(dense)[n][m == 1])
        for n, m in masks.items()
    )
    assert kept_changed  # and the rest was fine-tuned


def test_bf16_channels_last_and_adam_run(tiny_store, tmp_path):
    cfg = train_config_from(
        {
            **CFG,
            "epochs": 1,
            "precision": "bf16",
            "channels_last": True,
            "bn_mode": "train",
            "test_limit": 8,
            "opt": {"name": "adam", "lr": 1e-3},
            "sched": {"name": "onecycle"},
        }
    )
    res = run_train(tiny_store, "trades", {"steps": 1}, cfg, tmp_path / "r")
    assert res["metrics"]["loss"] > 0
    model, side = load_model(tmp_path / "r")
    assert side["train"]["bn_mode"] == "train" and side["train"]["precision"] == "bf16"


@pytest.mark.gpu
def test_cuda_run(tiny_store, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = train_config_from(
        {**CFG, "device": "cuda", "precision": "bf16", "channels_last": True}
    )
    run_train(tiny_store, METHOD, PARAMS, cfg, tmp_path / "g")
    model, _ = load_model(tmp_path / "g", device="cuda")
    assert next(model.parameters()).is_cuda


def test_train_accuracy_is_that_of_the_returned_logits(tmp_path):
    """The logged train accuracy comes from ``Loss.logits``; a bare tensor is refused."""
    from dataclasses import dataclass

    import torch.nn.functional as F

    from pipeline.models import build_model
    from pipeline.train.loop import Trainer
    from pipeline.train.method import Batch, Loss, TrainingMethod

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)

    class OneBatch:
        num_batches = 1

        def batches(self, epoch, start=0):
            yield Batch(x=x, y=y, index=torch.arange(8))

    @dataclass(frozen=True)
    class Fixed(TrainingMethod):
        bare: bool = False

        def batch_loss(self, model, batch, ctx):
            logits = model(batch.x)
            loss = F.cross_entropy(logits, batch.y)
            model(batch.x.flip(0))  # a later forward the accuracy must not see
            return loss if self.bare else Loss(loss, F.one_hot(batch.y, 4).float() + 0 * logits)

    meta = {"arch": "small_cnn", "num_classes": 4, "mean": [0.5] * 3, "std": [0.25] * 3}
    cfg = train_config_from({**CFG, "epochs": 1})
    model = build_model("small_cnn", 4, width=8)
    rows = Trainer(model, Fixed(), OneBatch(), cfg, tmp_path / "a", meta,
                   torch.device("cpu")).fit()
    assert rows[-1]["train_acc"] == 1.0
    with pytest.raises(TypeError, match="must return Loss"):
        Trainer(model, Fixed(bare=True), OneBatch(), cfg, tmp_path / "b", meta,
                torch.device("cpu")).fit()

"""Checkpoint round trip, sidecar contents, refusal of mismatched checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.models import build_model
from pipeline.models.checkpoint import (
    CheckpointMismatchError,
    checkpoint_sha256,
    save_checkpoint,
)
from pipeline.models.checkpoint import (
    load_network as load_model,
)

META = {
    "arch": "small_cnn",
    "width": 8,
    "num_classes": 10,
    "mean": [0.4, 0.5, 0.6],
    "std": [0.2, 0.25, 0.3],
    "dataset": "shapes",
    "dataset_fingerprint": "ab" * 32,
    "method": "standard",
    "params": {},
    "train": {"epochs": 1},
    "epoch": 1,
}


@pytest.fixture
def ckpt(tmp_path):
    model = build_model("small_cnn", 10, width=8, mean=META["mean"], std=META["std"])
    save_checkpoint(tmp_path / "run", model, META)
    return tmp_path / "run", model


def test_round_trip(ckpt):
    run, model = ckpt
    side = json.loads((run / "model.json").read_text())
    for key in ("sha256", "salpipe_version", "created", "saliency_sources", "metrics"):
        assert key in side
    assert side["sha256"] == checkpoint_sha256(run)
    loaded, meta = load_model(
        run / "model.pt", expect_arch="small_cnn", expect_dataset_fingerprint="ab" * 32
    )
    assert not loaded.training
    assert meta["width"] == 8
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    # mean/std come back from the sidecar into the model's own normalisation
    assert torch.allclose(loaded.normalize.mean.flatten(), torch.tensor(META["mean"]))


def test_refuses_other_arch(ckpt):
    with pytest.raises(CheckpointMismatchError, match="resnet10"):
        load_model(ckpt[0], expect_arch="resnet10")


def test_refuses_other_dataset(ckpt):
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        load_model(ckpt[0], expect_dataset_fingerprint="cd" * 32)


def test_detects_tampered_weights(ckpt):
    run, _ = ckpt
    other = build_model("small_cnn", 10, width=8)
    torch.save(other.state_dict(), run / "model.pt")
    with pytest.raises(ValueError, match="sha256"):
        load_model(run)


def test_missing_checkpoint_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope")


def test_meta_requires_arch(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        save_checkpoint(
            tmp_path, build_model("small_cnn", 10, width=8), {"num_classes": 10}
        )

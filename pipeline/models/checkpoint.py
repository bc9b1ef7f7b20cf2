"""Checkpoints: ``DIR/model.pt`` (a plain state_dict) plus the ``DIR/model.json`` sidecar.

Both files are written atomically (temp sibling, then rename), ``model.json`` last, so a
directory with a sidecar always holds the weights it describes (its ``sha256``). Loading
uses ``torch.load(weights_only=True)`` and refuses a checkpoint of another architecture or
another data set (by fingerprint) with an error naming both sides.

Sidecar keys (docs/contracts.md): ``arch``, ``width``, ``num_classes``, ``mean``, ``std``,
``dataset``, ``dataset_fingerprint``, ``method``, ``params``, ``train``, ``epoch``,
``metrics``, ``salpipe_version``, ``sha256``, ``saliency_sources``, ``created``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pipeline
from pipeline.core.io import atomic_torch_save, atomic_write_bytes, sha256_file
from pipeline.models import build_model

MODEL_FILE = "model.pt"
SIDECAR_FILE = "model.json"
REQUIRED_KEYS = ("arch", "num_classes", "mean", "std")
DEFAULT_META: dict[str, Any] = {
    "width": None,
    "dataset": None,
    "dataset_fingerprint": None,
    "method": None,
    "params": {},
    "train": {},
    "epoch": None,
    "metrics": {},
    "saliency_sources": {},
}


class CheckpointMismatchError(ValueError):
    """A checkpoint was made for another architecture or another data set."""


def _model_file(dir_or_model_pt: str | Path) -> Path:
    p = Path(dir_or_model_pt)
    return p / MODEL_FILE if p.is_dir() or p.suffix != ".pt" else p


def save_checkpoint(dir: str | Path, model: nn.Module, meta: dict) -> dict:
    """Write ``DIR/model.pt`` and ``DIR/model.json`` atomically.

    Args:
        dir: run directory (created if missing).
        model: the trained model; its ``state_dict`` is saved (moved to CPU).
        meta: sidecar content; must hold ``arch``, ``num_classes``, ``mean``, ``std``;
            missing optional keys get neutral defaults; ``sha256``, ``salpipe_version``
            and ``created`` are filled in here.

    Returns:
        The sidecar dict as written.
    """
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks required key(s): {', '.join(missing)}")
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(state, out / MODEL_FILE)
    side = {**DEFAULT_META, **meta}
    side["mean"] = [float(v) for v in side["mean"]]
    side["std"] = [float(v) for v in side["std"]]
    side["sha256"] = sha256_file(out / MODEL_FILE)
    side["salpipe_version"] = pipeline.__version__
    side["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    text = json.dumps(side, indent=2, sort_keys=True, default=str)
    atomic_write_bytes(out / SIDECAR_FILE, text.encode())
    return side


def read_sidecar(dir_or_model_pt: str | Path) -> dict:
    """The ``model.json`` beside ``model.pt``; FileNotFoundError names the missing file."""
    side = _model_file(dir_or_model_pt).with_name(SIDECAR_FILE)
    if not side.is_file():
        raise FileNotFoundError(f"checkpoint sidecar {side} not found")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint sidecar {side} is not valid JSON: {e}") from None


def checkpoint_sha256(dir: str | Path) -> str:
    """sha256 hex digest of ``DIR/model.pt`` (computed from the file, not the sidecar)."""
    path = _model_file(dir)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return sha256_file(path)


def check_meta(
    meta: dict,
    where: str | Path,
    expect_dataset_fingerprint: str | None = None,
    expect_arch: str | None = None,
) -> None:
    """Raise :class:`CheckpointMismatchError` when ``meta`` is for another arch/data set."""
    if expect_arch is not None and meta.get("arch") != expect_arch:
        raise CheckpointMismatchError(
            f"checkpoint {where} is a {meta.get('arch')!r} model, expected {expect_arch!r}"
        )
    fp = meta.get("dataset_fingerprint")
    if expect_dataset_fingerprint is not None and fp != expect_dataset_fingerprint:
        raise CheckpointMismatchError(
            f"checkpoint {where} was trained on data set {meta.get('dataset')!r} with "
            f"fingerprint {str(fp)[:12]}..., but this store has fingerprint "
            f"{expect_dataset_fingerprint[:12]}... (another data set or another version)"
        )


def load_network(
    dir_or_model_pt: str | Path,
    device: str | torch.device = "cpu",
    expect_dataset_fingerprint: str | None = None,
    expect_arch: str | None = None,
) -> tuple[nn.Module, dict]:
    """Rebuild the network from its sidecar and load its weights (no wrapper).

    A checkpoint whose sidecar has a ``wrapper`` block (a defence such as SAD) holds the
    weights of the inner network; :func:`pipeline.stages.loading.load_model` rebuilds
    the whole defence around what this returns.

    Args:
        dir_or_model_pt: a run directory or the path of its ``model.pt``.
        device: where the model goes.
        expect_dataset_fingerprint: when given, refuse a checkpoint of another data set.
        expect_arch: when given, refuse a checkpoint of another architecture.

    Returns:
        ``(model in eval mode on device, sidecar dict)``.

    Raises:
        FileNotFoundError: ``model.pt`` or ``model.json`` is missing.
        CheckpointMismatchError: architecture or data set differ from what was expected.
        ValueError: the weights do not match the sidecar's sha256 or architecture.
    """
    path = _model_file(dir_or_model_pt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    meta = read_sidecar(path)
    check_meta(meta, path.parent, expect_dataset_fingerprint, expect_arch)
    sha = sha256_file(path)
    if meta.get("sha256") and meta["sha256"] != sha:
        raise ValueError(
            f"checkpoint {path} does not match its sidecar (sha256 {sha[:12]}... vs "
            f"{meta['sha256'][:12]}...); it was overwritten or is corrupt"
        )
    model = build_model(
        meta["arch"],
        int(meta["num_classes"]),
        width=meta.get("width"),
        mean=meta["mean"],
        std=meta["std"],
    )
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint {path} does not fit arch {meta['arch']!r}: {e}"
        ) from None
    return model.to(device).eval(), meta


def wrapped_model_id(meta: dict) -> str:
    """What identifies the evaluated model: the weights' sha256, plus the wrapper if any.

    Two wrapped variants can share weights (SAD saliency-only keeps the base model's), so
    for a wrapped model this is the sha256 of ``{sha256, wrapper}``; for a plain model it
    is the weights' sha256 itself.
    """
    block = meta.get("wrapper")
    if not block:
        return str(meta.get("sha256", ""))
    text = json.dumps({"sha256": meta.get("sha256"), "wrapper": block}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()

"""Checkpoints: ``DIR/model.pt`` (a plain state_dict) plus the ``DIR/model.json`` sidecar.

Both files are written atomically (temp sibling, then rename), ``model.json`` last, so a
directory with a sidecar always holds the weights it describes (its ``sha256``). Loading
uses ``torch.load(weights_only=True)`` and refuses a checkpoint of another architecture or
another data set (by fingerprint) with an error naming both sides.

Sidecar keys (docs/contracts.md): ``arch``, ``width``, ``num_classes``, ``mean``, ``std``,
``dataset``, ``dataset_fingerprint``, ``method``, ``params``, ``train``, ``epoch``,
``metrics``, ``salpipe_version``, ``sha256``, ``saliency_sources``, ``created``.

Every torch file salpipe reads (``model.pt``, ``resume.pt``) goes through
:func:`load_torch_file`: a missing, truncated, corrupt or foreign file is one
:class:`CheckpointError` naming it, and a pickle holding anything but tensors and plain
containers is refused (:class:`UnsafeCheckpointError`, "refused to load"), never run.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
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


class CheckpointError(ValueError):
    """A checkpoint file cannot be used: truncated, corrupt, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """The safe loader (``weights_only``) refused a pickle holding arbitrary objects."""


def _unpickler_detail(message: str) -> str:
    """The line of torch's weights-only refusal that says what it refused."""
    for line in message.splitlines():
        line = line.strip()
        if "nsupported" in line or "GLOBAL" in line:
            return line
    return "it holds objects other than tensors and plain containers"


def load_torch_file(
    path: str | Path, what: str = "checkpoint", fix: str = "", mmap: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with errors that name the file.

    Args:
        path: the file. what: what it is, for the message ("checkpoint", "resume state").
        fix: what would fix it, appended to the message.
        mmap: map the tensors lazily (a cheap look at a large file's small entries).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the pickle references globals outside torch's allowlist
            (nothing of it is executed).
        CheckpointError: anything else that keeps the file from loading (truncated,
            corrupt, not a torch file).
    """
    path = Path(path)
    tail = f"; {fix}" if fix else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found{tail}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"refused to load {what} {path}: the safe loader (weights_only) rejected it "
            f"({_unpickler_detail(str(e))}); it was not written by salpipe, or it is "
            f"corrupt or was tampered with, and is never unpickled unsafely{tail}"
        ) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as e:  # RuntimeError (zip), EOFError, KeyError, OSError(EINVAL), ...
        first = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{what} {path} cannot be read ({type(e).__name__}: {first or 'no detail'}): "
            f"it is truncated, corrupt or not a torch checkpoint{tail}"
        ) from None


def _model_file(dir_or_model_pt: str | Path) -> Path:
    p = Path(dir_or_model_pt)
    return p / MODEL_FILE if p.is_dir() or p.suffix != ".pt" else p


def finite_weights(model: nn.Module) -> bool:
    """Whether every floating tensor of ``model``'s state (buffers too) is finite."""
    flags = [
        torch.isfinite(t).all() for t in model.state_dict().values()
        if t.is_floating_point()
    ]
    return bool(torch.stack(flags).all()) if flags else True


def sidecar_path(dir_or_model_pt: str | Path) -> Path:
    """The ``model.json`` of a run directory or of its ``model.pt``."""
    return _model_file(dir_or_model_pt).with_name(SIDECAR_FILE)


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
        data = json.loads(side.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint sidecar {side} is not valid JSON ({e}); it is "
                         "corrupt or not a salpipe sidecar") from None
    if not isinstance(data, dict):
        raise ValueError(f"checkpoint sidecar {side} holds a JSON {type(data).__name__}, "
                         "not a mapping; it is corrupt or not a salpipe sidecar")
    return data


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
        UnsafeCheckpointError: ``model.pt`` is a pickle the safe loader refuses.
        CheckpointError: ``model.pt`` is truncated, corrupt, not a state_dict, or does
            not match the sidecar's sha256 or architecture.
        ValueError: the sidecar is not valid JSON or lacks the model's description.
    """
    path = _model_file(dir_or_model_pt)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    meta = read_sidecar(path)
    side = path.with_name(SIDECAR_FILE)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint sidecar {side} lacks {', '.join(missing)}; it is "
                         "not a salpipe checkpoint sidecar (retrain or restore it)")
    check_meta(meta, path.parent, expect_dataset_fingerprint, expect_arch)
    sha = sha256_file(path)
    if meta.get("sha256") and meta["sha256"] != sha:
        raise CheckpointError(
            f"checkpoint {path} does not match its sidecar {side} (sha256 {sha[:12]}... "
            f"vs {str(meta['sha256'])[:12]}...); it was overwritten or is corrupt: "
            "restore the pair or retrain"
        )
    try:
        model = build_model(
            meta["arch"],
            int(meta["num_classes"]),
            width=meta.get("width"),
            mean=meta["mean"],
            std=meta["std"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"checkpoint sidecar {side} describes no buildable model "
                         f"({e}); it is corrupt or of another salpipe version") from None
    state = load_torch_file(path, "checkpoint", "retrain it or restore a good copy")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a state_dict "
            "(parameter name -> tensor); it is not a salpipe model.pt"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(
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

"""``run_sad_calibrate``: checkpoint + store -> SAD checkpoint; ``load_sad_model``.

The output directory is a normal checkpoint (contracts.md) of the recalibrated network
whose sidecar adds ``wrapper: {name: "sad", ratio, saliency, normalise, grad_mode,
add_saliency, ...}`` and ``sad`` (the calibration config and the base model's identity),
so :func:`pipeline.stages.loading.load_model` returns the whole SAD module.

Every input (the settings' names, the base checkpoint, the store and its split) and the
output location are checked before anything is written: ``--out`` must be absent, empty,
or a SAD checkpoint (the same calibration: skipped; another one: replaced only with
``--overwrite``). Anything else there (a training run, other files, a file) is refused
and left as it is, with or without ``--overwrite``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from pipeline.cache.store import open_store, read_split, store_info
from pipeline.config.sad import SadConfig
from pipeline.core.io import atomic_dir, sha256_file
from pipeline.core.seeds import resolve_device, seed_everything
from pipeline.models.checkpoint import (
    MODEL_FILE,
    SIDECAR_FILE,
    CheckpointError,
    finite_weights,
    load_network,
    read_sidecar,
    save_checkpoint,
)
from pipeline.sad.calibrate import calibrate, check_names
from pipeline.sad.model import SADModel, spec_from_meta, wrapper_block

log = logging.getLogger(__name__)


def _load_plain(model_dir, device, fingerprint=None) -> tuple[nn.Module, dict]:
    """The checkpoint's network without any wrapper, and its sidecar."""
    return load_network(model_dir, device=device, expect_dataset_fingerprint=fingerprint)


def _method_name(base_method: str | None, variant: str) -> str:
    # AT+SAD (paper 001 Table 1-3; data/paper_tables names it at_sad) from any
    # adversarially trained base; the base method itself is in params.base_method
    if base_method in (None, "", "standard"):
        return variant
    return f"at_{variant}"


def _check_out(out: Path, record: dict, overwrite: bool) -> bool:
    """True when ``out`` already holds this calibration (nothing to do); writes nothing.

    Raises:
        FileExistsError: ``out`` is a file, a folder holding anything but a SAD
            checkpoint, another SAD calibration without ``overwrite``, or a SAD
            checkpoint with other files that ``overwrite`` would delete.
        CheckpointError: ``out`` holds this calibration but its ``model.pt`` is
            missing or does not match its sidecar (``overwrite`` recalibrates it).
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a run folder; choose another "
                              "--out or move it")
    if not out.is_dir():
        return False
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if SIDECAR_FILE not in entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise FileExistsError(f"--out {out} is not empty ({shown}) and holds no SAD "
                              "checkpoint; it is left as it is (--overwrite does not "
                              "replace it): choose another --out or empty it")
    side = read_sidecar(out)
    old = side.get("sad")
    if not isinstance(old, dict) or (side.get("wrapper") or {}).get("name") != "sad":
        raise FileExistsError(f"--out {out} holds a checkpoint that is not a SAD "
                              f"calibration (method {side.get('method')!r}, see "
                              f"{out / SIDECAR_FILE}); it is left as it is (--overwrite "
                              "does not replace it): choose another --out")
    same = {k: old.get(k) for k in record} == json.loads(json.dumps(record, default=str))
    if same and not overwrite:
        model = out / MODEL_FILE
        if not model.is_file() or (side.get("sha256")
                                   and sha256_file(model) != side["sha256"]):
            raise CheckpointError(f"{out} holds this SAD calibration but its {model} is "
                                  "missing or does not match its sidecar's sha256; rerun "
                                  "with --overwrite to recalibrate it")
        return True
    if not overwrite:
        raise FileExistsError(f"{out} holds another SAD calibration ({old.get('variant')}"
                              f", base {str(old.get('base_sha256'))[:12]}...); "
                              "use --overwrite to replace it")
    extra = [e for e in entries if e not in (MODEL_FILE, SIDECAR_FILE)]
    if extra:
        raise FileExistsError(f"--out {out} holds {', '.join(extra[:5])} besides its SAD "
                              "checkpoint, which --overwrite would delete; move them or "
                              "choose another --out")
    return False


def run_sad_calibrate(model_dir: str | Path, store: str | Path, out: str | Path,
                      cfg: SadConfig | None = None, *,
                      device: str | torch.device = "auto", split: str = "train",
                      overwrite: bool = False) -> dict:
    """Calibrate SAD from the checkpoint ``model_dir`` on ``split`` of ``store``.

    Args:
        model_dir: run directory of the original model (standard, PGD-AT or TRADES).
        store: the data set's Zarr store (its fingerprint must match the model's).
        out: output run directory (a checkpoint with a ``wrapper`` block).
        cfg: :class:`~pipeline.config.sad.SadConfig` (None: the defaults).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        split: calibration split (the paper: the training set).
        overwrite: replace an ``out`` made with another configuration.

    Returns:
        ``{"skipped", "out", "batches", "seconds", "method"}``.
    """
    cfg = SadConfig() if cfg is None else cfg.config()  # a sweep entry's extra keys dropped
    check_names(cfg)  # before any data is read
    device = resolve_device(device)
    out = Path(out)
    base_sidecar = read_sidecar(model_dir)
    if base_sidecar.get("wrapper"):
        raise ValueError(f"{model_dir} is already a wrapped ({base_sidecar['wrapper'].get('name')})"
                         " model; calibrate SAD from the plain checkpoint it was made from")
    record = {"config": asdict(cfg), "variant": cfg.variant, "split": split,
              "base_sha256": base_sidecar.get("sha256"), "base_run": Path(model_dir).name}
    if _check_out(out, record, overwrite):
        log.info("%s already holds this SAD calibration: nothing to do", out)
        return {"skipped": True, "out": str(out)}
    group = open_store(store)
    info = store_info(group)
    if split not in group:
        raise ValueError(f"store {store} has no split {split!r} to calibrate on; splits: "
                         f"{', '.join(map(str, info.get('splits', [])))} (use --split)")
    model, meta = _load_plain(model_dir, device, info.get("fingerprint"))
    arrays = read_split(group, split)
    if len(arrays.labels) == 0:
        raise ValueError(f"split {split!r} of store {store} is empty: nothing to calibrate "
                         "on (use another --split)")
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    network, used = calibrate(model, arrays.images, arrays.labels, cfg, device=device)
    secs = time.perf_counter() - t0
    if not finite_weights(network):
        raise ValueError(f"calibrating SAD from {model_dir} gave non-finite weights or BN "
                         "statistics (a NaN/Inf base model or attack); nothing was written "
                         f"to {out}: check the base model and the attack settings")
    wrapper = wrapper_block(cfg)
    new_meta = {k: v for k, v in meta.items()
                if k not in ("sha256", "salpipe_version", "created", "wrapper")}
    new_meta.update({
        "method": _method_name(meta.get("method"), cfg.variant),
        "params": {"ratio": cfg.ratio, "saliency": cfg.saliency,
                   "saliency_params": dict(cfg.saliency_params), "normalise": cfg.normalise,
                   "attack": cfg.attack, "attack_params": dict(cfg.attack_params),
                   "base_method": meta.get("method"),
                   "base_params": meta.get("params") or {}},
        "metrics": {**(meta.get("metrics") or {}), "sad_calibration_batches": used,
                    "sad_calibration_seconds": secs},
        "wrapper": wrapper, "sad": record,
    })
    # write into a temp sibling, then swap in: a crash never leaves a half SAD checkpoint
    with atomic_dir(out) as tmp:
        save_checkpoint(tmp, network, new_meta)
    log.info("wrote SAD model %s (%s, %d batches, %.1f s)", out, cfg.variant, used, secs)
    return {"skipped": False, "out": str(out), "batches": used, "seconds": secs,
            "method": new_meta["method"]}


def load_sad_model(model_dir: str | Path, device: str | torch.device = "cpu",
                   grad_mode: str | None = None) -> tuple[SADModel, dict]:
    """The SAD module of a ``sad-calibrate`` output and its sidecar.

    Args:
        model_dir: a SAD run directory (sidecar with ``wrapper.name == "sad"``).
        grad_mode: override the recorded gradient mode (``exact`` | ``bpda``).

    Raises:
        ValueError: the checkpoint is not a SAD model.
    """
    network, meta = _load_plain(model_dir, device)
    block = meta.get("wrapper") or {}
    if block.get("name") != "sad":
        raise ValueError(f"{model_dir} is not a SAD model (sidecar has no wrapper 'sad')")
    cfg = spec_from_meta(block)
    if grad_mode is not None:
        cfg = replace(cfg, grad_mode=grad_mode)
    return SADModel(network, cfg).to(device).eval(), meta


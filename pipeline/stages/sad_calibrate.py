"""``run_sad_calibrate``: checkpoint + store -> SAD checkpoint; ``load_sad_model``.

The output directory is a normal checkpoint (contracts.md) of the recalibrated network
whose sidecar adds ``wrapper: {name: "sad", ratio, saliency, normalise, grad_mode,
add_saliency, ...}`` and ``sad`` (the calibration config and the base model's identity),
so :func:`pipeline.stages.loading.load_model` returns the whole SAD module.
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
from pipeline.core.io import atomic_dir
from pipeline.core.seeds import resolve_device, seed_everything
from pipeline.models.checkpoint import load_network, read_sidecar, save_checkpoint
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
    if (out / "model.json").is_file():
        old = read_sidecar(out).get("sad") or {}
        same = {k: old.get(k) for k in record} == json.loads(json.dumps(record, default=str))
        if same and not overwrite:
            log.info("%s already holds this SAD calibration: nothing to do", out)
            return {"skipped": True, "out": str(out)}
        if not overwrite:
            raise FileExistsError(f"{out} holds another SAD calibration ({old.get('variant')}"
                                  f", base {str(old.get('base_sha256'))[:12]}...); "
                                  "use --overwrite to replace it")
    group = open_store(store)
    info = store_info(group)
    model, meta = _load_plain(model_dir, device, info.get("fingerprint"))
    arrays = read_split(group, split)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    network, used = calibrate(model, arrays.images, arrays.labels, cfg, device=device)
    secs = time.perf_counter() - t0
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


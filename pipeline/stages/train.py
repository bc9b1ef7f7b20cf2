"""Training stages: ``run_train`` (any registered method) and ``run_train_teacher``.

A stage reads the store, builds model, method and stream, and trains into ``out``
(``model.pt``, ``model.json``, ``metrics.jsonl``, ``resume.pt``, ``config.yaml``). It is
idempotent: when ``out`` already holds a finished run with the same configuration it
does nothing and says so; a finished run with another configuration is an error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from pipeline.cache import STREAMS
from pipeline.cache.sources import open_extras
from pipeline.cache.store import open_store
from pipeline.cache.stream import read_split_arrays
from pipeline.config import ConfigError, build_method, from_dict, to_dict
from pipeline.core.io import atomic_write_bytes
from pipeline.core.seeds import resolve_device, seed_everything
from pipeline.models import build_model
from pipeline.models.checkpoint import (
    SIDECAR_FILE,
    check_meta,
    load_network,
    read_sidecar,
)
from pipeline.models.prune import PruneConfig, apply_masks, magnitude_masks, sparsity
from pipeline.train import TRAINING
from pipeline.train.config import TrainConfig
from pipeline.train.loop import RESUME_FILE, Trainer, _diff, resume_key

log = logging.getLogger(__name__)

# teacher mode -> training method of its (first) phase; ``sparse`` then prunes
TEACHER_METHODS = {"std": "standard", "adv": "pgd_at", "sparse": "standard"}


def open_train_store(store: str | Path):
    """The zarr group of a prepared store (missing store or schema: clear error)."""
    return open_store(store, mode="r")


def _store_meta(group, store: str | Path) -> dict:
    attrs = dict(group.attrs)
    missing = [
        k for k in ("num_classes", "mean", "std", "fingerprint") if k not in attrs
    ]
    if missing:
        raise ValueError(f"store {store} lacks root attribute(s) {', '.join(missing)}")
    return attrs


def finished_run(out: Path, meta: dict) -> bool:
    """True when ``out`` holds a complete run with this configuration; error if another."""
    if not (out / SIDECAR_FILE).is_file():
        return False
    side = read_sidecar(out)
    if not side.get("complete"):
        return False
    where = _diff(resume_key(side), resume_key(meta))
    if where:
        raise ValueError(
            f"{out} holds a finished run with another configuration ({where} "
            "differs); choose another --out or delete it"
        )
    return True


def run_train(
    store: str | Path,
    method: str,
    params: dict | None,
    cfg: TrainConfig,
    out: str | Path,
    *,
    device: str | torch.device | None = None,
    saliency: Sequence[str] = (),
    masks_from: Sequence[str] = (),
    init_state: dict | None = None,
    masks: dict[str, torch.Tensor] | None = None,
    extra_meta: dict | None = None,
) -> dict:
    """Train ``cfg.net.arch`` with training method ``method`` on ``store``'s train split.

    Args:
        store: the prepared zarr store. method, params: registry name and parameters.
        cfg: training config. out: run directory. device: overrides ``cfg.device``.
        saliency: cached sources the method reads (stage two): maps into
            ``batch.saliency``, or salience masks into ``batch.masks`` when the method's
            ``saliency_kind`` is ``mask``. Each map goes through the method's
            ``prepare_saliency`` once after loading.
        masks_from: further cached sources read as salience masks into ``batch.masks``.
        init_state: start from these weights (e.g. a pruned dense model).
        masks: parameter name -> 0/1 mask held during training (sparse fine-tuning).
        extra_meta: more sidecar fields (part of the run's identity).

    Returns:
        ``{"out", "skipped", "metrics"}`` (metrics of the last epoch).
    """
    out = Path(out)
    group = open_train_store(store)
    attrs = _store_meta(group, store)
    spec = build_method(TRAINING, method, params, f"method {method}")
    if spec.needs_saliency and not (saliency or masks_from):
        raise ConfigError(
            f"method {method!r} needs saliency sources (--saliency); none given"
        )
    if getattr(spec, "saliency_kind", "map") == "mask":
        saliency, masks_from = (), (*saliency, *masks_from)
    meta = {
        "arch": cfg.net.arch,
        "width": cfg.net.width,
        "num_classes": int(attrs["num_classes"]),
        "mean": list(attrs["mean"]),
        "std": list(attrs["std"]),
        "dataset": attrs.get("dataset"),
        "dataset_fingerprint": attrs["fingerprint"],
        "method": method,
        "params": to_dict(spec),
        "train": to_dict(cfg),
        "store": str(store),
        "saliency_sources": {},
        **(extra_meta or {}),
    }
    # every named source present, complete and of this data set, before anything runs;
    # checked once here, the stream reads through these same readers
    extras = open_extras(group, "train", saliency, masks_from, spec.prepare_saliency)
    meta["saliency_sources"] = {s.name: s.provenance for s in [*extras[0], *extras[1]]}
    if finished_run(out, meta):
        log.info("%s already holds this finished run; nothing to do", out)
        (out / RESUME_FILE).unlink(missing_ok=True)  # stale if killed right at the end
        return {
            "out": str(out),
            "skipped": True,
            "metrics": read_sidecar(out).get("metrics"),
        }
    dev = resolve_device(device if device is not None else cfg.device)
    seed_everything(cfg.seed)
    model = build_model(
        cfg.net.arch,
        meta["num_classes"],
        width=cfg.net.width,
        mean=meta["mean"],
        std=meta["std"],
    )
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(dev)
    stream = STREAMS.get(cfg.stream).from_store(
        group,
        "train",
        extras=extras,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=dev,
        aug=cfg.aug,
        drop_last=cfg.drop_last,
    )
    meta["stream"] = getattr(stream, "mode", cfg.stream)  # what ``auto`` chose
    test = None
    if cfg.test_split:
        x_t, y_t = read_split_arrays(group, cfg.test_split)
        if cfg.test_limit:
            x_t, y_t = x_t[: cfg.test_limit], y_t[: cfg.test_limit]
        test = (torch.as_tensor(x_t), torch.as_tensor(y_t).long())
    out.mkdir(parents=True, exist_ok=True)
    resolved = {
        "method": method,
        "params": meta["params"],
        "train": meta["train"],
        "store": str(store),
        "dataset_fingerprint": attrs["fingerprint"],
        **({"extra": extra_meta} if extra_meta else {}),
    }
    atomic_write_bytes(
        out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False).encode()
    )
    trainer = Trainer(model, spec, stream, cfg, out, meta, dev, test=test, masks=masks)
    metrics = trainer.fit()
    (out / RESUME_FILE).unlink(missing_ok=True)  # finished: the sidecar says so
    return {
        "out": str(out),
        "skipped": False,
        "metrics": metrics[-1] if metrics else None,
    }


def run_train_teacher(
    store: str | Path,
    arch: str,
    mode: str,
    out: str | Path,
    train_cfg: TrainConfig,
    device: str | torch.device | None = None,
    width: int | None = None,
    params: dict | None = None,
    prune: PruneConfig | dict | None = None,
) -> dict:
    """Train a stage-one teacher: ``std`` (standard), ``adv`` (pgd_at) or ``sparse``.

    ``sparse`` trains a standard model in ``out/dense``, prunes ``prune.sparsity`` of its
    conv/linear weights by magnitude and fine-tunes it into ``out`` with the mask held;
    the sidecar records ``sparsity`` (measured) and ``prune`` (the config).
    """
    if mode not in TEACHER_METHODS:
        raise ConfigError(
            f"teacher mode {mode!r} unknown; known: {', '.join(TEACHER_METHODS)}"
        )
    out = Path(out)
    net = dataclasses.replace(
        train_cfg.net,
        arch=arch,
        width=width if width is not None else train_cfg.net.width,
    )
    cfg = dataclasses.replace(train_cfg, net=net)
    method = TEACHER_METHODS[mode]
    if mode != "sparse":
        return run_train(store, method, params, cfg, out, device=device)
    pcfg = (
        prune
        if isinstance(prune, PruneConfig)
        else from_dict(PruneConfig, prune, "prune")
    )
    dense = run_train(store, method, params, cfg, out / "dense", device=device)
    fingerprint = _store_meta(open_train_store(store), store)["fingerprint"]
    model, _ = load_network(
        dense["out"], expect_dataset_fingerprint=fingerprint, expect_arch=arch
    )
    masks = magnitude_masks(model, pcfg.sparsity, pcfg.scope)
    apply_masks(model, masks)
    ft = dataclasses.replace(cfg, epochs=pcfg.finetune_epochs or cfg.epochs)
    # the loop re-applies the masks after every step, so the model's sparsity at the end
    # is at least the masks' (recorded here, before fine-tuning, so a rerun sees it too)
    return run_train(
        store,
        method,
        params,
        ft,
        out,
        device=device,
        init_state=model.state_dict(),
        masks=masks,
        extra_meta={
            "prune": to_dict(pcfg),
            "sparsity": sparsity(model),
            "pruned_from": str(out / "dense"),
        },
    )


def check_checkpoint_for(
    store: str | Path, ckpt: str | Path, arch: str | None = None
) -> dict:
    """Refuse ``ckpt`` when it was trained on another data set than ``store`` (or arch)."""
    attrs = _store_meta(open_train_store(store), store)
    side = read_sidecar(ckpt)
    check_meta(side, ckpt, attrs["fingerprint"], arch)
    return side

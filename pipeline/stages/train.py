"""Training stages: ``run_train`` (any registered method) and ``run_train_teacher``.

A stage reads the store, builds model, method and stream, and trains into ``out``
(``model.pt``, ``model.json``, ``metrics.jsonl``, ``resume.pt``, ``config.yaml``). It is
idempotent: when ``out`` already holds a finished run with the same configuration it
does nothing and says so; an unfinished one resumes; a run (finished or unfinished)
with another configuration is an error.

Everything is checked before a byte is written: the config, the method and its
parameters, the store, the saliency sources, the model and stream, and what ``out``
holds (its sidecar, a readable ``resume.pt`` of this configuration, ``metrics.jsonl``),
so a refused command leaves ``out`` exactly as it was. ``config.yaml`` records the
command (``train`` / ``train-teacher``) and the resolved configuration that made the run.
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
from pipeline.core.io import atomic_write_bytes, sha256_file
from pipeline.core.seeds import resolve_device, seed_everything
from pipeline.models import build_model
from pipeline.models.checkpoint import (
    MODEL_FILE,
    SIDECAR_FILE,
    CheckpointError,
    check_meta,
    load_network,
    read_sidecar,
)
from pipeline.models.prune import PruneConfig, apply_masks, magnitude_masks, sparsity
from pipeline.train import TRAINING
from pipeline.train.config import TrainConfig
from pipeline.train.loop import (
    METRICS_FILE,
    RESUME_FILE,
    Trainer,
    _diff,
    read_metrics_file,
    read_resume,
    resolved_precision,
    resume_key,
)

CONFIG_FILE = "config.yaml"

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


def check_out(out: Path, meta: dict) -> str:
    """What ``out`` holds for the run described by sidecar-shaped ``meta``; writes nothing.

    Returns:
        ``"finished"`` (a complete run of this configuration), ``"resume"`` (an
        unfinished one with a readable ``resume.pt``) or ``"fresh"``.

    Raises:
        FileExistsError: ``out`` is a file.
        ValueError: ``out`` holds a run (finished or unfinished) of another
            configuration, or its sidecar or ``metrics.jsonl`` is unreadable.
        CheckpointError: its ``resume.pt`` is truncated, corrupt or unsafe, or the
            finished run's ``model.pt`` is missing or does not match its sidecar.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"--out {out} is a file, not a run folder; choose another --out or move it"
        )
    if not out.is_dir():
        return "fresh"
    key = resume_key(meta)
    if (out / SIDECAR_FILE).is_file():
        side = read_sidecar(out)
        where = _diff(resume_key(side), key)
        if where:
            kind = "finished" if side.get("complete") else "unfinished"
            raise ValueError(
                f"{out} holds a {kind} run with another configuration ({where} "
                f"differs, see {out / SIDECAR_FILE}); choose another --out or delete it"
            )
        if side.get("complete"):
            model = out / MODEL_FILE
            if not model.is_file() or (
                side.get("sha256") and sha256_file(model) != side["sha256"]
            ):
                raise CheckpointError(
                    f"{out} holds a finished run whose {model} is missing or does not "
                    f"match its sidecar's sha256; delete {out} to retrain it"
                )
            return "finished"
    read_metrics_file(out / METRICS_FILE)  # readable before anything is appended
    if (out / RESUME_FILE).is_file():
        # truncated, unsafe or of another config: refused (tensors only mapped)
        read_resume(out / RESUME_FILE, key, mmap=True)
        return "resume"
    return "fresh"


def finished_run(out: Path, meta: dict) -> bool:
    """True when ``out`` holds a complete run with this configuration; error if another
    (or anything :func:`check_out` refuses)."""
    return check_out(Path(out), meta) == "finished"


@dataclasses.dataclass
class _Plan:
    """A run checked against the store, the method, its sources and ``out``."""

    out: Path
    group: object
    spec: object
    meta: dict
    extras: tuple
    state: str  # finished | resume | fresh


def _plan_run(
    store: str | Path,
    method: str,
    params: dict | None,
    cfg: TrainConfig,
    out: Path,
    saliency: Sequence[str] = (),
    masks_from: Sequence[str] = (),
    extra_meta: dict | None = None,
) -> _Plan:
    """Every check of :func:`run_train` that needs no model: writes nothing."""
    if out.exists() and not out.is_dir():  # before the store is even opened
        raise FileExistsError(
            f"--out {out} is a file, not a run folder; choose another --out or move it"
        )
    group = open_train_store(store)
    attrs = _store_meta(group, store)
    # settings that follow the run's length (SAT's alpha) resolved here, so the sidecar,
    # the resume key and the results table hold the values that trained
    spec = build_method(TRAINING, method, params, f"method {method}").for_run(cfg.epochs)
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
    state = check_out(out, meta)
    return _Plan(out, group, spec, meta, extras, state)


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
    command: str = "train",
    record: dict | None = None,
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
        command: the CLI command recorded in ``config.yaml`` (``train``,
            ``train-teacher``). record: more ``config.yaml`` fields (not identity).

    Returns:
        ``{"out", "skipped", "metrics"}`` (metrics of the last epoch).

    Raises:
        ValueError / FileNotFoundError / FileExistsError / CheckpointError: a bad input
            or an ``out`` holding something else, before anything is written.
        pipeline.train.loop.TrainingDivergedError: the loss became NaN or infinite;
            the last good resume state and checkpoint are kept.
    """
    out = Path(out)
    if cfg.precision == "auto":  # resolved before the run's identity is taken
        cfg = dataclasses.replace(cfg, precision=resolved_precision(
            "auto", resolve_device(device if device is not None else cfg.device)))
    plan = _plan_run(store, method, params, cfg, out, saliency, masks_from, extra_meta)
    meta, spec, group = plan.meta, plan.spec, plan.group
    if plan.state == "finished":
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
        extras=plan.extras,
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
    trainer = Trainer(model, spec, stream, cfg, out, meta, dev, test=test, masks=masks)
    resolved = {
        "command": command,
        **(record or {}),
        "method": method,
        "params": meta["params"],
        "train": meta["train"],
        "store": str(store),
        "dataset_fingerprint": meta["dataset_fingerprint"],
        "saliency_sources": sorted(meta["saliency_sources"]),
        **({"extra": extra_meta} if extra_meta else {}),
    }
    # everything checked: the first byte written into ``out``
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        out / CONFIG_FILE, yaml.safe_dump(resolved, sort_keys=False).encode()
    )
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
    record = {"mode": mode}
    if mode != "sparse":
        return run_train(store, method, params, cfg, out, device=device,
                         command="train-teacher", record=record)
    pcfg = (
        prune
        if isinstance(prune, PruneConfig)
        else from_dict(PruneConfig, prune, "prune")
    )
    ft = dataclasses.replace(cfg, epochs=pcfg.finetune_epochs or cfg.epochs)
    # both run folders checked before either is written (sparsity, measured after the
    # dense run, is not part of the identity)
    _plan_run(store, method, params, cfg, out / "dense")
    _plan_run(store, method, params, ft, out, extra_meta={"prune": to_dict(pcfg)})
    dense = run_train(store, method, params, cfg, out / "dense", device=device,
                      command="train-teacher", record={**record, "phase": "dense"})
    fingerprint = _store_meta(open_train_store(store), store)["fingerprint"]
    model, _ = load_network(
        dense["out"], expect_dataset_fingerprint=fingerprint, expect_arch=arch
    )
    masks = magnitude_masks(model, pcfg.sparsity, pcfg.scope)
    apply_masks(model, masks)
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
        command="train-teacher",
        record={**record, "phase": "finetune"},
    )


def check_checkpoint_for(
    store: str | Path, ckpt: str | Path, arch: str | None = None
) -> dict:
    """Refuse ``ckpt`` when it was trained on another data set than ``store`` (or arch)."""
    attrs = _store_meta(open_train_store(store), store)
    side = read_sidecar(ckpt)
    check_meta(side, ckpt, attrs["fingerprint"], arch)
    return side

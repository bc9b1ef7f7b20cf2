"""``salpipe evaluate``: a checkpoint (defence included) x a preset -> the results table."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.core.seeds import resolve_device
from pipeline.evaluate.presets import AttackRun, load_presets, select_preset
from pipeline.evaluate.table import (
    check_batch_size,
    check_fingerprint,
    check_output,
    check_split,
    evaluate_to_table,
    run_name,
)
from pipeline.models.checkpoint import MODEL_FILE, read_sidecar, wrapped_model_id
from pipeline.stages.loading import load_model


def _transfer_source(source_model: str | Path | None, preset: str,
                     runs: list[AttackRun]) -> str | Path | None:
    """The transfer attacks' source model: ``--source-model``, else the preset's own
    ``params.source`` (one for the whole preset), else None."""
    if source_model is not None:
        return source_model
    named = {r.params.get("source") for r in runs
             if r.name == "transfer" and r.params.get("source")}
    if len(named) > 1:
        raise ValueError(f"preset {preset!r} names several transfer sources "
                         f"({', '.join(sorted(named))}); evaluate one with --source-model")
    return next(iter(named), None)


def check_model_dir(path: str | Path, flag: str = "--model") -> dict:
    """The sidecar of the run directory ``path`` (or its ``model.pt``), after checking it
    is there; FileNotFoundError / ValueError name ``flag`` and the path."""
    p = Path(path)
    what = f"{flag} takes the run directory holding {MODEL_FILE} and model.json"
    if not p.exists():
        raise FileNotFoundError(f"model run directory {p} not found ({what})")
    if p.is_dir() and not (p / MODEL_FILE).is_file():
        inside = sorted(c.name for c in p.iterdir())[:8]
        raise FileNotFoundError(
            f"{flag} {p}: {MODEL_FILE} not found in it, so it is not a run directory "
            f"(it holds {', '.join(inside) or 'nothing'}; did training finish?)")
    if p.is_file() and p.suffix != ".pt":
        raise ValueError(f"{flag} {p} is a file, not a run directory ({what})")
    return read_sidecar(p)


def run_evaluate(
    model_dir: str | Path, store: str | Path, split: str = "test", preset: str = "quick",
    out: str | Path = "results.parquet", device: str | torch.device = "auto", *,
    n: int | None = None, batch_size: int = 256, seed: int = 0,
    source_model: str | Path | None = None, presets_file: str | Path | None = None,
    force: bool = False, views: list[str] | tuple[str, ...] | None = None,
) -> dict:
    """Evaluate the checkpoint ``model_dir`` with ``preset`` on ``split`` of ``store``.

    Every input is checked before anything is evaluated or written, in this order: the
    presets file and ``preset``, the store and ``split`` (and ``n``), the model (and the
    transfer source; each must have been trained on this store's data set, by
    fingerprint), then ``out``. A failing check raises FileNotFoundError or ValueError
    (:class:`~pipeline.config.ConfigError` for a bad presets file) naming the file,
    preset, entry or value at fault, and ``out`` is left as it was.

    Args:
        model_dir: run directory (``model.pt`` + ``model.json``); a defence (SAD) is
            rebuilt whole.
        store: the data set's Zarr store.
        split: split to evaluate (``test``).
        preset: preset name from ``presets_file`` (default: the package's presets); an
            unknown name is refused naming the nearest known one.
        out: results Parquet file; rows are appended (atomically rewritten: at every
            moment it holds the old table or the new one). An existing file that is not
            a results table is refused, not overwritten.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        n: evaluate the first ``n`` images of the split (all when None). ``n`` must be
            from 1 to the split's size: a larger ``n`` is an error naming ``n`` and the
            split's size (it never silently evaluates fewer images).
        batch_size: attack batch size (results do not depend on it).
        seed: evaluation seed (random starts, noise).
        source_model: run directory of the transfer attacks' source model.
        force: re-run and replace an evaluation already in ``out``.
        views: for a wrapped defence (SAD), which attack views to run (``adaptive``,
            ``adaptive_bpda``, ``nonadaptive``; default all that apply).

    Returns:
        ``{"skipped", "rows", "out", ...}``.
    """
    check_batch_size(batch_size)
    runs = select_preset(load_presets(presets_file), preset, presets_file)
    info, _ = check_split(store, split, n)
    check_fingerprint(check_model_dir(model_dir), info, store, model_dir)
    source_dir = _transfer_source(source_model, preset, runs)
    if source_dir is not None:
        flag = "--source-model" if source_model is not None else \
            f"the transfer source of preset {preset!r}"
        check_fingerprint(check_model_dir(source_dir, flag), info, store, source_dir, flag)
    check_output(out)
    device = resolve_device(device)
    model, meta = load_model(model_dir, device=device)
    meta = {**meta, "model_id": wrapped_model_id(meta), "run_name": run_name(model_dir)}
    source = load_model(source_dir, device=device)[0] if source_dir is not None else None
    return evaluate_to_table(model, meta, store, split, preset, out, device=device, n=n,
                             batch_size=batch_size, seed=seed, source_model=source_model,
                             presets_file=presets_file, force=force, views=views,
                             source_network=source, runs=runs)

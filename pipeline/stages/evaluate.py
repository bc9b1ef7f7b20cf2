"""``salpipe evaluate``: a checkpoint (defence included) x a preset -> the results table."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.core.seeds import resolve_device
from pipeline.evaluate.presets import load_presets
from pipeline.evaluate.table import evaluate_to_table, run_name
from pipeline.models.checkpoint import wrapped_model_id
from pipeline.stages.loading import load_model


def _transfer_source(source_model: str | Path | None, preset: str,
                     presets_file: str | Path | None,
                     device: torch.device) -> nn.Module | None:
    """The transfer attacks' source model: ``--source-model``, else the preset's own
    ``params.source`` (one for the whole preset), else None."""
    if source_model is None:
        named = {r.params.get("source") for r in load_presets(presets_file).get(preset, [])
                 if r.name == "transfer" and r.params.get("source")}
        if len(named) > 1:
            raise ValueError(f"preset {preset!r} names several transfer sources "
                             f"({', '.join(sorted(named))}); evaluate one with --source-model")
        source_model = next(iter(named), None)
    if source_model is None:
        return None
    return load_model(source_model, device=device)[0]


def run_evaluate(
    model_dir: str | Path, store: str | Path, split: str = "test", preset: str = "quick",
    out: str | Path = "results.parquet", device: str | torch.device = "auto", *,
    n: int | None = None, batch_size: int = 256, seed: int = 0,
    source_model: str | Path | None = None, presets_file: str | Path | None = None,
    force: bool = False, views: list[str] | tuple[str, ...] | None = None,
) -> dict:
    """Evaluate the checkpoint ``model_dir`` with ``preset`` on ``split`` of ``store``.

    Args:
        model_dir: run directory (``model.pt`` + ``model.json``); a defence (SAD) is
            rebuilt whole.
        store: the data set's Zarr store.
        split: split to evaluate (``test``).
        preset: preset name from ``presets_file`` (default: the package's presets).
        out: results Parquet file; rows are appended (atomically rewritten).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        n: first ``n`` images of the split (all when None).
        batch_size: attack batch size (results do not depend on it).
        seed: evaluation seed (random starts, noise).
        source_model: run directory of the transfer attacks' source model.
        force: re-run and replace an evaluation already in ``out``.
        views: for a wrapped defence (SAD), which attack views to run (``adaptive``,
            ``adaptive_bpda``, ``nonadaptive``; default all that apply).

    Returns:
        ``{"skipped", "rows", "out", ...}``.
    """
    device = resolve_device(device)
    model, meta = load_model(model_dir, device=device)
    meta = {**meta, "model_id": wrapped_model_id(meta), "run_name": run_name(model_dir)}
    source = _transfer_source(source_model, preset, presets_file, device)
    return evaluate_to_table(model, meta, store, split, preset, out, device=device, n=n,
                             batch_size=batch_size, seed=seed, source_model=source_model,
                             presets_file=presets_file, force=force, views=views,
                             source_network=source)

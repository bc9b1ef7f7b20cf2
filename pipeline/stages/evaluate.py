"""``salpipe evaluate``: a checkpoint (defence included) x a preset -> the results table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from pipeline.attacks.transfer import DEFAULT_SOURCE, SOURCE_NAME
from pipeline.config import ConfigError
from pipeline.core.seeds import resolve_device
from pipeline.evaluate.presets import AttackRun, load_presets, select_preset
from pipeline.evaluate.table import (
    check_batch_size,
    check_fingerprint,
    check_output,
    check_split,
    evaluate_to_table,
    run_name,
    transfer_runs_by_source,
)
from pipeline.models.checkpoint import MODEL_FILE, read_sidecar, wrapped_model_id
from pipeline.stages.loading import load_model

SourceModels = str | Path | Mapping[str, str | Path] | None


def _given_sources(source_model: SourceModels) -> dict[str, Path]:
    """``--source-model`` as ``{name: run directory}`` (a single path: ``default``)."""
    if source_model is None:
        return {}
    if isinstance(source_model, Mapping):
        for name in source_model:
            if not SOURCE_NAME.match(str(name)):
                raise ConfigError(f"--source-model {name}=...: a source name is "
                                  "[a-z0-9_]+ (a transfer entry's params.source_name)")
        return {str(k): Path(v) for k, v in source_model.items()}
    return {DEFAULT_SOURCE: Path(source_model)}


def transfer_sources(source_model: SourceModels, preset: str,
                     runs: list[AttackRun]) -> dict[str, tuple[Path, str, str]]:
    """Every transfer source of the evaluation: ``{name: (run directory, what names it,
    how an error shows it)}``.

    A name comes from ``--source-model NAME=DIR`` (``source_model``), else from the
    preset's own ``params.source`` of the transfer entries crafting on that name (one
    directory per name). A given name that no transfer entry of ``preset`` crafts on is
    a :class:`~pipeline.config.ConfigError` (a misspelt name would otherwise only skip
    the entries of the right one), except ``default``: a bare ``--source-model DIR`` is
    accepted with any preset, as it always was.
    """
    given = _given_sources(source_model)
    by_source = transfer_runs_by_source(runs)
    for name, path in given.items():
        if name != DEFAULT_SOURCE and name not in by_source:
            used = ", ".join(sorted(by_source)) or "none: it has no transfer entry"
            raise ConfigError(
                f"--source-model {name}={path}: no transfer entry of preset {preset!r} "
                f"crafts on a source named {name!r} (the names its transfer entries use, "
                f"params.source_name: {used}); fix the name or the preset")
    out = {name: (path, f"--source-model {name}=DIR", f"{name}={path}")
           for name, path in given.items()}
    for name, named in by_source.items():
        dirs = {r.params["source"] for r in named if r.params.get("source")}
        if name in out or not dirs:
            continue
        if len(dirs) > 1:
            raise ValueError(f"preset {preset!r} names several transfer sources "
                             f"({', '.join(sorted(dirs))}) for the name {name!r}; give "
                             f"one with --source-model {name}=DIR")
        path = Path(dirs.pop())
        out[name] = (path, f"the transfer source {name!r} of preset {preset!r}", str(path))
    return out


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
    source_model: SourceModels = None, presets_file: str | Path | None = None,
    force: bool = False, views: list[str] | tuple[str, ...] | None = None,
) -> dict:
    """Evaluate the checkpoint ``model_dir`` with ``preset`` on ``split`` of ``store``.

    Every input is checked before anything is evaluated or written, in this order: the
    presets file and ``preset`` (and the names of the transfer sources), the store and
    ``split`` (and ``n``), the model and every transfer source (each must have been
    trained on this store's data set, by fingerprint), then ``out``. A failing check
    raises FileNotFoundError or ValueError (:class:`~pipeline.config.ConfigError` for a
    bad presets file or option) naming the file, preset, entry or value at fault, and
    ``out`` is left as it was.

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
        source_model: the transfer attacks' source models: ``{name: run directory}``
            (``--source-model NAME=DIR``), or one run directory, the source
            ``default``. Each transfer entry crafts on the source of its
            ``params.source_name`` (default ``default``); an entry whose source is not
            given (here or by the preset's ``params.source``) is skipped with a flag
            naming the missing ``--source-model NAME=DIR``. The results' key column
            ``source_model`` records every source as ``name=<model id>``, sorted by
            name, comma-separated (the id is the checkpoint's sha256, a SAD model's
            :func:`~pipeline.models.checkpoint.wrapped_model_id`).
        force: re-run and replace an evaluation already in ``out``.
        views: for a wrapped defence (SAD), which attack views to run (``adaptive``,
            ``adaptive_bpda``, ``nonadaptive``; default all that apply).

    Returns:
        ``{"skipped", "rows", "out", ...}``.
    """
    check_batch_size(batch_size)
    runs = select_preset(load_presets(presets_file), preset, presets_file)
    sources = transfer_sources(source_model, preset, runs)
    info, _ = check_split(store, split, n)
    check_fingerprint(check_model_dir(model_dir), info, store, model_dir)
    source_ids = {}
    for name, (path, flag, shown) in sources.items():
        side = check_model_dir(path, flag)
        check_fingerprint(side, info, store, shown, flag.removesuffix(f" {name}=DIR"))
        source_ids[name] = wrapped_model_id(side) or str(path)
    check_output(out)
    device = resolve_device(device)
    model, meta = load_model(model_dir, device=device)
    meta = {**meta, "model_id": wrapped_model_id(meta), "run_name": run_name(model_dir)}
    used = transfer_runs_by_source(runs)  # a source no entry crafts on is not loaded
    networks = {name: load_model(path, device=device)[0]
                for name, (path, *_) in sources.items() if name in used}
    return evaluate_to_table(model, meta, store, split, preset, out, device=device, n=n,
                             batch_size=batch_size, seed=seed, presets_file=presets_file,
                             force=force, views=views, source_models=networks,
                             source_ids=source_ids, runs=runs)

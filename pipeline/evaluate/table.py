"""One model x one preset -> rows appended to a tidy Parquet table (the results table).

The stage that loads a checkpoint and calls :func:`evaluate_to_table` is
:mod:`pipeline.stages.evaluate`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch import nn

import pipeline
from pipeline.attacks.transfer import source_name_of
from pipeline.cache import layout
from pipeline.cache.store import open_store, read_split, store_info
from pipeline.config import ConfigError
from pipeline.core.io import atomic_path, check_output_location
from pipeline.core.seeds import resolve_device, seed_everything
from pipeline.evaluate.journal import Journal, journal_path
from pipeline.evaluate.presets import (
    AttackRun,
    load_presets,
    runs_digest,
    select_preset,
)
from pipeline.evaluate.views import available_views, evaluate_views

log = logging.getLogger(__name__)

# Columns of the results table, in order (one row per attack x eps x metric).
COLUMNS = [
    "dataset", "split", "arch", "method", "params", "teacher", "saliency_sources", "seed",
    "model", "model_sha256", "preset", "eval_seed", "source_model", "view", "attack",
    "attack_name", "attack_params", "eps", "steps", "restarts", "n", "metric", "value",
    "accuracy", "seconds", "flags", "outcome", "salpipe_version", "created",
]
# ``outcome``: an accuracy row's per-example result (pipeline/core/outcomes.py: hex of
# the packed bits, example i of the evaluated split = bit i; "" for metric rows and in
# tables written before outcomes were recorded). Paired tests over images read it.
# An evaluation is identified by these; a second run with the same key is a no-op.
# ``source_model``: the transfer sources, ``name=<model id>`` sorted by name and joined
# by "," (:func:`source_key`); "" without any.
# ``view``: what the attack sees for a wrapped defence (pipeline/evaluate/views.py:
# adaptive, adaptive_bpda, nonadaptive; "all" = worst case over them); "" otherwise.
# For a wrapped model ``model_sha256`` is pipeline.models.checkpoint.wrapped_model_id.
KEY = ["model_sha256", "split", "preset", "n", "eval_seed", "source_model", "view"]


# What a file must hold to be taken for a results table (``view`` may be missing: a
# table written before views existed).
RESULT_COLUMNS = [k for k in KEY if k != "view"] + ["attack", "eps", "metric", "value"]


def check_split(store: str | Path, split: str, n: int | None) -> tuple[dict, int]:
    """``(root attrs, number of images of split)`` after checking that ``store`` is a
    data set store with ``split`` and that ``n`` (None: all) is 1 .. that number.

    Reads only the store's metadata. Raises what :func:`pipeline.cache.store.open_store`
    raises for a missing or unreadable store, ValueError (no such split) or
    :class:`~pipeline.config.ConfigError` (``n`` out of range: a bad option value) with
    a message naming the store, the split and ``n``.
    """
    group = open_store(store)
    info = dict(group.attrs)
    if split not in group or layout.labels_path(split) not in group:
        raise ValueError(f"store {store} has no split {split!r}; its splits: "
                         f"{', '.join(info.get('splits', [])) or 'none'} (fix --split)")
    size = int(group[layout.labels_path(split)].shape[0])
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"--n {n!r}: expected a whole number of images from 1 to "
                              f"{size} (split {split!r} of {store}), or leave it out for all")
        if n > size:
            raise ConfigError(f"--n {n} is larger than split {split!r} of store {store}, "
                              f"which has {size} images; give --n {size} or less, or leave "
                              "--n out to evaluate them all")
    return info, size


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below 1 (a :class:`~pipeline.config.ConfigError`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size!r}: expected a whole number of 1 or "
                          "more (results do not depend on it)")


def check_fingerprint(meta: dict, info: dict, store: str | Path, model: str | Path,
                      flag: str = "--model") -> None:
    """Refuse a model trained on another data set than ``store`` holds (by fingerprint;
    a model or store without one is not checked)."""
    mine, theirs = meta.get("dataset_fingerprint"), info.get("fingerprint")
    if mine and theirs and mine != theirs:
        raise ValueError(
            f"{flag} {model} was trained on data set {meta.get('dataset')!r} (fingerprint "
            f"{str(mine)[:12]}...), but store {store} holds {info.get('dataset')!r} "
            f"(fingerprint {str(theirs)[:12]}...): evaluate it on the store it was trained "
            "on, or give a model trained on this store")


def read_eval_split(store: str | Path, split: str, n: int | None):
    """``(x float [N,C,H,W] in [0,1], y long [N], index long [N], root attrs)`` of the store."""
    arrays, info = read_split(store, split, 0, n), store_info(store)
    images, labels = arrays.images, arrays.labels
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return x, y, torch.arange(len(y)), info


def _teachers(sources: Any) -> str:
    names = sorted(sources) if isinstance(sources, dict) else list(sources or [])
    return ",".join(sorted({s.split(".")[0] for s in names if "." in s}))


def read_results(path: str | Path) -> pd.DataFrame:
    """The results table at ``path`` (empty with :data:`COLUMNS` when missing).

    Raises:
        ValueError: ``path`` exists but is not a results table (a folder, not Parquet,
            or without the table's key columns); the file is not touched.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    fix = "it was left as it is: give another --out, or move it away"
    if path.is_dir():
        raise ValueError(f"results table {path} is a folder, not a file; {fix} (e.g. "
                         f"--out {path / 'results.parquet'})")
    try:
        df = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        why = " ".join(str(e).split())[:200]
        raise ValueError(f"{path} exists but is not a Parquet results table ({why}); "
                         f"{fix}") from None
    missing = [c for c in RESULT_COLUMNS if c not in df]
    if missing:
        raise ValueError(f"{path} is a Parquet file but not a salpipe results table (no "
                         f"column(s) {', '.join(missing)}); {fix}")
    if "view" not in df:  # a table written before views existed
        df.insert(COLUMNS.index("view"), "view", "")
    if "outcome" not in df:  # a table written before per-example outcomes
        df["outcome"] = ""
    return df


def check_output(path: str | Path) -> pd.DataFrame:
    """The results table at ``path`` (:func:`read_results`), after checking that it can be
    written: an existing file that is not a results table, or a folder above it that is
    a file or not writable, is refused (nothing is touched)."""
    path = Path(path)
    table = read_results(path)
    check_output_location(path, "results table")
    return table


def write_results(df: pd.DataFrame, path: str | Path) -> None:
    """Write atomically: a temp sibling, then rename."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def evaluate_to_table(
    model: nn.Module, meta: dict, store: str | Path, split: str, preset: str,
    out: str | Path, *, device: str | torch.device = "auto", n: int | None = None,
    batch_size: int = 256, seed: int = 0, presets_file: str | Path | None = None,
    force: bool = False, views: list[str] | tuple[str, ...] | None = None,
    source_models: Mapping[str, nn.Module] | None = None,
    source_ids: Mapping[str, str] | None = None, runs: list[AttackRun] | None = None,
) -> dict:
    """Evaluate an in-memory ``model`` (e.g. a SAD wrapper) described by ``meta``.

    ``runs``: the preset's attack runs when the caller has loaded them already (the
    evaluate stage); None loads ``preset`` from ``presets_file``.

    ``source_models``: the transfer sources, loaded, by name; a transfer run crafts on
    the one its ``params.source_name`` names (default ``default``), and a run whose
    source is not there is skipped with a flag on the clean row naming the missing
    ``--source-model NAME=DIR``. ``source_ids``: ``{name: model id}`` of the sources
    (default: none), recorded in the key column ``source_model`` (:func:`source_key`).

    ``meta`` is a checkpoint sidecar dict (``arch``, ``method``, ``params``, ``dataset``,
    ``sha256``, ``train``, ``saliency_sources``); ``meta["sha256"]`` identifies the model
    in the no-op check, so a wrapper must give its own (e.g. sha + variant;
    ``meta["model_id"]`` wins when present).
    ``views``: for a model with an inner ``.network`` (a SAD wrapper), what the attacks
    see (:data:`pipeline.evaluate.views.VIEWS`; default all that apply), one row group
    per view plus the worst case over views (view ``all``); a plain model gets view "".
    See :func:`pipeline.stages.evaluate.run_evaluate` for the other arguments.
    """
    # every input is checked before anything is read in bulk, evaluated or written
    check_batch_size(batch_size)
    device = resolve_device(device)
    run_list = runs if runs is not None else select_preset(load_presets(presets_file),
                                                           preset, presets_file)
    if views and not available_views(model):
        raise ValueError(f"views {list(views)} need a wrapped model (e.g. SAD); "
                         f"{meta.get('arch')} {meta.get('method')} has no inner network")
    info, size = check_split(store, split, n)
    check_fingerprint(meta, info, store, meta.get("run_name") or "the model")
    table = check_output(out)
    views = list(views) if views else available_views(model)
    key = {"model_sha256": str(meta.get("model_id") or meta.get("sha256", "")),
           "split": split, "preset": preset, "n": size if n is None else int(n),
           "eval_seed": int(seed), "source_model": source_key(source_ids or {})}
    # names the journal; the preset's runs, transfer runs without a source included
    # (which sources there are is in the key)
    jkey = _journal_key(key, views, run_list)
    if len(table):
        same = np.ones(len(table), dtype=bool)
        for k, v in key.items():
            same &= (table[k] == v).to_numpy()
        # done when every requested view is there; a re-run replaces those views (and
        # the worst case over views, "all")
        wanted = views or [""]
        if set(wanted) <= set(table.loc[same, "view"]) and not force:
            log.info("evaluation %s already in %s: nothing to do (use force)", key, out)
            journal_path(out, jkey).unlink(missing_ok=True)  # a kill after the write
            return {"skipped": True, "rows": int(same.sum()), "out": str(out)}
        table = table[~(same & table["view"].isin(wanted + ["all"]).to_numpy())]
    x, y, index, info = read_eval_split(store, split, n)
    seed_everything(seed)
    sources = dict(source_models or {})
    missing = {name: named for name, named in transfer_runs_by_source(run_list).items()
               if name not in sources}
    skipped = [r for named in missing.values() for r in named]
    run_list = [r for r in run_list if r not in skipped]
    extra = {"transfer": {"source_models": sources}} if sources else {}
    model = model.to(device)
    t0 = time.perf_counter()
    journal = Journal(journal_path(out, jkey), jkey)
    if force:
        journal.discard()
    rows = evaluate_views(model, x, y, index, run_list, views or None,
                          batch_size=batch_size, seed=seed, device=device,
                          extra_params=extra, journal=journal)
    for r in rows if skipped else []:
        if r["attack"] == "clean":
            r["flags"] += [f"skipped {len(named)} transfer run(s) of source {name!r}: no "
                           f"--source-model {name}=DIR" for name, named in missing.items()]
    base = {
        "dataset": meta.get("dataset") or info.get("dataset"), "arch": meta.get("arch"),
        "method": meta.get("method"), "params": json.dumps(meta.get("params") or {},
                                                           sort_keys=True, default=str),
        "teacher": _teachers(meta.get("saliency_sources")),
        "saliency_sources": json.dumps(sorted(meta.get("saliency_sources") or {})),
        "seed": (meta.get("train") or {}).get("seed", math.nan),
        "model": str(meta.get("run_name", "")), "salpipe_version": pipeline.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), **key,
    }
    new = pd.DataFrame([{**base, **r, "flags": json.dumps(r["flags"])} for r in rows])
    new["seed"] = pd.to_numeric(new["seed"], errors="coerce")
    # extra row keys (e.g. the SAD evaluation's ``view``) are kept after the standard ones
    new = new[COLUMNS + [c for c in new.columns if c not in COLUMNS]]
    table = new if not len(table) else pd.concat([table, new], ignore_index=True)
    write_results(table, out)
    journal.remove()
    secs = time.perf_counter() - t0
    log.info("wrote %d rows to %s (%.1f s)", len(new), out, secs)
    return {"skipped": False, "rows": len(new), "seconds": secs, "out": str(out),
            "clean_accuracy": rows[0]["accuracy"]}


def _journal_key(key: dict, views: Sequence[str], runs: Sequence[AttackRun]) -> dict:
    """What names an evaluation's journal: the table's key, the views, the attack runs."""
    return {**key, "views": list(views), "runs": runs_digest(runs)}


def transfer_runs_by_source(runs: Sequence[AttackRun]) -> dict[str, list[AttackRun]]:
    """The transfer runs of ``runs`` by the name of the source they craft on."""
    out: dict[str, list[AttackRun]] = {}
    for r in runs:
        if r.name == "transfer":
            out.setdefault(source_name_of(r.params), []).append(r)
    return out


def source_key(source_ids: Mapping[str, str]) -> str:
    """The results' ``source_model`` of an evaluation with these transfer sources:
    ``"base=<id>,default=<id>"`` (sorted by name; "" for none)."""
    return ",".join(f"{name}={source_ids[name]}" for name in sorted(source_ids))


def run_name(model_dir: str | Path) -> str:
    """A readable name of a run directory: ``sat_gbp/seed0`` for ``.../sat_gbp/seed0``."""
    path = Path(model_dir)
    if path.suffix == ".pt":
        path = path.parent
    if re.fullmatch(r"seed\d+", path.name):
        return f"{path.parent.name}/{path.name}"
    return path.name

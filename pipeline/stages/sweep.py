"""The sweep of the DAG, checked against every registry before anything runs.

The Snakefile calls :func:`load_dag` (``workflow/rules/common.smk``); the config layer
validates the sweep file's names through the registries handed to it here.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import ConfigError
from pipeline.config.dag import Dag
from pipeline.config.sweep import Registries, Sweep, load_sweep
from pipeline.data import DATASETS
from pipeline.evaluate.presets import (
    adaptive_suite_gaps,
    load_presets,
    runs_digest,
    select_preset,
)
from pipeline.models import MODELS
from pipeline.saliency import SALIENCY
from pipeline.train import TRAINING


def registries() -> Registries:
    """Every registry a sweep file names."""
    return Registries(datasets=DATASETS, models=MODELS, saliency=SALIENCY,
                      training=TRAINING)


def load_checked_sweep(path: str | Path, overrides: dict | None = None) -> Sweep:
    """:func:`~pipeline.config.sweep.load_sweep` with every name checked."""
    return load_sweep(path, overrides, registries())


def load_dag(config: dict, sweeps_dir: str | Path = "config/sweeps") -> Dag:
    """The DAG of the Snakemake ``config``, its sweep checked against every registry and
    its presets against the presets file (a defence's preset must hold the adaptive
    suite)."""
    presets = load_presets()
    dag = Dag.from_config(config, sweeps_dir, registries(), presets)
    check_presets(dag)
    return dag


def check_presets(dag: Dag) -> None:
    """Every preset the sweep names exists, and the defences' preset holds the adaptive
    suite (:func:`~pipeline.evaluate.presets.adaptive_suite_gaps`): a sweep that would
    evaluate a defence more weakly than the field's practice does not start."""
    sweep = dag.sweep
    for key in ("preset", "defence_preset"):
        select_preset(dag.presets, getattr(sweep.evaluate, key))
    for name in dag.presets_used():
        select_preset(dag.presets, name)
    defences: dict[str, list[str]] = {}
    for d in sweep.datasets:
        for m in sweep.students_for(d):
            if m in sweep.sad:
                for r in sweep.eval_runs(d, m):
                    defences.setdefault(r.preset, [])
                    if m not in defences[r.preset]:
                        defences[r.preset].append(m)
    for name, models in defences.items():
        gaps = adaptive_suite_gaps(dag.presets[name])
        if gaps:
            raise ConfigError(
                f"sweep {sweep.name}: evaluate.defence_preset {name!r} lacks the adaptive "
                f"suite its defences ({', '.join(models)}) must be evaluated with:\n  "
                + "\n  ".join(gaps) + "\n(use the `defence` preset, or complete this one)")


def preset_digest(dag: Dag, name: str) -> str:
    """A digest of what preset ``name`` attacks (its resolved runs,
    :func:`~pipeline.evaluate.presets.runs_digest`): the evaluate rule's
    ``preset_digest`` param. Snakemake reruns an evaluation when this param changes, so editing one preset
    reruns only the evaluations that run it; a comment, or an edit of another preset,
    reruns nothing (the presets file is not an input of the rule)."""
    return runs_digest(select_preset(dag.presets, name))[:16]


def sweep_path(sweep: str | Path, sweeps_dir: str | Path = "config/sweeps") -> Path:
    """A sweep given as a file path or as a name in ``sweeps_dir``; a name that is
    neither is an error listing the known sweeps."""
    path = Path(sweep)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"sweep file {path} does not exist")
        return path
    named = Path(sweeps_dir) / f"{sweep}.yaml"
    if not named.is_file():
        known = sorted(p.stem for p in Path(sweeps_dir).glob("*.yaml"))
        raise ConfigError(f"unknown sweep {str(sweep)!r}; known: {', '.join(known) or 'none'} "
                          f"(in {sweeps_dir}), or give a path to a sweep file")
    return named


def load_dag_of(sweep: str | Path, sweeps_dir: str | Path = "config/sweeps") -> Dag:
    """The DAG of one sweep (a name or a file path), checked against every registry."""
    path = sweep_path(sweep, sweeps_dir)
    return load_dag({"sweep": path.stem}, path.parent)

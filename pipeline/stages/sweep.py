"""The sweep of the DAG, checked against every registry before anything runs.

The Snakefile calls :func:`load_dag` (``workflow/rules/common.smk``); the config layer
validates the sweep file's names through the registries handed to it here.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.dag import Dag
from pipeline.config.sweep import Registries, Sweep, load_sweep
from pipeline.data import DATASETS
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
    """The DAG of the Snakemake ``config``, its sweep checked against every registry."""
    return Dag.from_config(config, sweeps_dir, registries())

"""Sweeps: the sweep of one run of the DAG (data sets x teachers x saliency sources x
students x seeds -> evaluation -> report), loaded from ``config/sweeps/<name>.yaml``.

The Snakefile reads a :class:`Sweep` through :func:`load_sweep` and asks it for the
targets and for each job's command-line arguments; the package (not the Snakefile) owns
those choices, so a job's command in its log reproduces it by hand.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.config import ConfigError, build_method, from_dict, load_yaml_file
from pipeline.config.sad import SadConfig
from pipeline.core.registry import Registry


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: registry adapter, where it lives, adapter params, evaluation split."""

    adapter: str
    root: str | None = None  # relative to the sweep's data_root; None for generated sets
    params: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    # images evaluated on this data set when its split is smaller than the sweep's
    # evaluate.n (salpipe evaluate refuses an --n beyond the split); None: evaluate.n
    eval_n: int | None = None


@dataclass(frozen=True)
class TeacherSpec:
    """A stage-one teacher: architecture, width, training mode, training config file."""

    arch: str
    mode: Literal["std", "adv", "sparse"]
    train: str  # path of a training config YAML (relative to the repository root)
    width: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # method params (e.g. PGD eps)
    datasets: tuple[str, ...] | None = None  # None = every data set of the sweep


# Whose class a teacher's saliency map explains: the true label or the teacher's
# prediction. One default for the sweep files and ``salpipe precompute-saliency``.
SALIENCY_TARGETS = ("label", "pred")
DEFAULT_TARGET = "pred"


@dataclass(frozen=True)
class SourceSpec:
    """A saliency source ``<teacher>.<method>`` or ``annotation.<mask|bbox>``."""

    method: str | None = None  # None for annotation sources; else a saliency method name
    target: Literal["label", "pred"] = DEFAULT_TARGET
    params: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StudentSpec:
    """A stage-two student: training method, its params and the sources it reads."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    saliency: tuple[str, ...] = ()
    datasets: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class SadModelSpec(SadConfig):
    """A SAD model: recalibrate the BN statistics of student ``base`` (paper 001).

    Every other key is a :class:`~pipeline.config.sad.SadConfig` setting (same defaults
    as ``salpipe sad-calibrate``), except ``seed``: a SAD job's seed is its job's seed.
    """

    base: str
    datasets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation of every student: attack preset, number of test images."""

    preset: str = "quick"
    n: int | None = None  # None = the whole evaluation split
    batch_size: int = 256


@dataclass(frozen=True)
class StudentTrain:
    """Architecture and training config shared by all students of a sweep."""

    arch: str
    train: str
    width: int | None = None


@dataclass(frozen=True)
class Sweep:
    name: str
    datasets: dict[str, DatasetSpec]
    teachers: dict[str, TeacherSpec]
    saliency: dict[str, SourceSpec]
    student: StudentTrain
    students: dict[str, StudentSpec]
    sad: dict[str, SadModelSpec] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    evaluate: EvalSpec = EvalSpec()
    data_root: str = "../shared/data"

    # -- which jobs exist -------------------------------------------------------------

    def _on(self, spec_datasets: tuple[str, ...] | None, dataset: str) -> bool:
        return spec_datasets is None or dataset in spec_datasets

    def teachers_for(self, dataset: str) -> list[str]:
        return [t for t, s in self.teachers.items() if self._on(s.datasets, dataset)]

    def sources_for(self, dataset: str) -> list[str]:
        return [s for s, spec in self.saliency.items() if self._on(spec.datasets, dataset)]

    def students_for(self, dataset: str) -> list[str]:
        plain = [s for s, spec in self.students.items() if self._on(spec.datasets, dataset)]
        sad = [s for s, spec in self.sad.items() if self._on(spec.datasets, dataset)]
        return plain + sad


def load_sweep(path: str | Path, overrides: dict | None = None,
               registries: Registries | None = None) -> Sweep:
    """Load and validate ``config/sweeps/<name>.yaml`` (plus top-level overrides).

    ``registries``: the registries the names are checked against (``datasets``,
    ``models``, ``saliency``, ``training``; :func:`pipeline.stages.sweep.registries`);
    None checks the file's structure and cross-references only.
    """
    data = load_yaml_file(path, "sweep file") or {}
    path = Path(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    sweep = from_dict(Sweep, data, f"sweep {path.stem}")
    validate_sweep(sweep, registries)
    return sweep


@dataclass(frozen=True)
class Registries:
    """The registries a sweep's names are checked against, handed in by the caller (the
    config layer imports no data set, model, saliency or training code)."""

    datasets: Registry
    models: Registry
    saliency: Registry
    training: Registry


def validate_sweep(p: Sweep, registries: Registries | None = None) -> None:
    """Cross-checks: sources and bases resolve; with ``registries``, every name exists
    and every method's parameters build."""
    r = registries
    for name, d in p.datasets.items():
        where = f"sweep {p.name}: datasets.{name}"
        if r is not None:
            build_method(r.datasets, d.adapter, _dataset_params(p, d), where)
    for name, t in p.teachers.items():
        if r is not None:
            _check_name(r.models, t.arch, f"teachers.{name}.arch")
        _check_datasets(p, t.datasets, f"teachers.{name}.datasets")
    if r is not None:
        _check_name(r.models, p.student.arch, "student.arch")
    for src, s in p.saliency.items():
        origin, _, method = src.partition(".")
        where = f"saliency.{src}"
        if origin == "annotation":
            if method not in ("mask", "bbox"):
                raise ConfigError(f"{where}: annotation sources are annotation.mask, annotation.bbox")
        else:
            if origin not in p.teachers:
                raise ConfigError(
                    f"{where}: teacher {origin!r} is not in teachers ({', '.join(p.teachers)})"
                )
            if r is not None:
                build_method(r.saliency, s.method or method, s.params, where)
        _check_datasets(p, s.datasets, f"{where}.datasets")
    for name, s in p.students.items():
        if r is not None:
            build_method(r.training, s.method, s.params, f"students.{name}")
        for src in s.saliency:
            if src not in p.saliency:
                raise ConfigError(
                    f"students.{name}.saliency: source {src!r} is not in saliency "
                    f"({', '.join(p.saliency)})"
                )
        _check_datasets(p, s.datasets, f"students.{name}.datasets")
    for name, s in p.sad.items():
        if s.seed != SadConfig.seed:
            raise ConfigError(f"sad.{name}.seed: a SAD job's seed is its job's seed "
                              f"(the sweep's seeds: {list(p.seeds)}); drop the key")
        if r is not None:
            build_method(r.saliency, s.saliency, s.saliency_params, f"sad.{name}.saliency")
        _check_datasets(p, s.datasets, f"sad.{name}.datasets")
        if s.base not in p.students:
            raise ConfigError(f"sad.{name}.base: {s.base!r} is not a student of this sweep")
        if name in p.students:
            raise ConfigError(f"sad.{name}: the name is already a student")


def _check_name(registry, name: str, where: str) -> None:
    if name not in registry:
        raise ConfigError(f"{where}: unknown {registry.family} {name!r}; known: {', '.join(registry.names())}")


def _check_datasets(p: Sweep, names: tuple[str, ...] | None, where: str) -> None:
    for d in names or ():
        if d not in p.datasets:
            raise ConfigError(f"{where}: data set {d!r} is not in datasets ({', '.join(p.datasets)})")


def _dataset_params(p: Sweep, d: DatasetSpec) -> dict:
    params = dict(d.params)
    if d.root is not None:
        params["root"] = str(Path(p.data_root) / d.root)
    return params


def kv_args(flag: str, params: dict[str, Any]) -> str:
    """``{'eps': '8/255', 'steps': 5}`` -> ``-p eps=8/255 -p steps=5`` (shell-quoted)."""
    out = []
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = "[" + ",".join(str(i) for i in v) + "]"
        out.append(f"{flag} {shlex.quote(f'{k}={v}')}")
    return " ".join(out)

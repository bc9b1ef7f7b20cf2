"""Sweeps: the sweep of one run of the DAG (data sets x teachers x saliency sources x
students x seeds -> evaluation -> report), loaded from ``config/sweeps/<name>.yaml``.

The Snakefile reads a :class:`Sweep` through :func:`load_sweep` and asks it for the
targets and for each job's command-line arguments; the package (not the Snakefile) owns
those choices, so a job's command in its log reproduces it by hand.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.config import (
    ConfigError,
    budget_field,
    build_method,
    from_dict,
    load_yaml_file,
)
from pipeline.config.sad import SadConfig
from pipeline.core.budget import parse_budget
from pipeline.core.registry import Registry


@dataclass(frozen=True)
class ThreatModel:
    """The training threat model of a sweep: what every attack-based student inherits.

    Args:
        eps: l-inf radius of every training attack (and SAT's ``eps0``, the noise
            amplitude of the uniform-noise baselines).
        steps, step_size: the inner attack's steps and step size.
        random_start: start the inner PGD from U[-eps, eps] (methods whose reference
            fixes another start, e.g. TRADES' x + 0.001 N(0, 1), keep theirs; the
            comparison check shows it).
        bn_mode: BatchNorm mode while crafting training attacks (``eval``: running
            statistics; ``train``: batch statistics, as the SAT code).
    """

    eps: float = budget_field(8 / 255)
    steps: int = 10
    step_size: float = budget_field(2 / 255)
    random_start: bool = True
    bn_mode: Literal["eval", "train"] = "eval"


# method fields a student inherits from the threat model: field -> threat setting
THREAT_FIELDS = {"eps": "eps", "steps": "steps", "step_size": "step_size",
                 "random_start": "random_start", "eps0": "eps", "noise_eps": "eps"}
# what a student may declare as a deviation (the settings the comparison check compares)
DEVIATION_KEYS = ("eps", "steps", "step_size", "random_start", "bn_mode", "beta", "epochs",
                  "batch_size", "opt", "sched", "aug", "teacher")


@dataclass(frozen=True)
class TransferSpec:
    """A transfer attack's source model: a student or SAD model of the sweep (trained on
    the same data set) and the seed of its run. The seed is never implied: the job's own
    seed would attack a model with itself, so it must be outside the sweep's ``seeds``
    (its training job is added to the DAG, evaluated by nothing)."""

    model: str
    seed: int


# Transfer source names a SAD model always has (the sweep's ``transfer`` may not use
# them): ``base``, its own undefended base student with the job's seed, and
# ``other_seed``, that student trained with the sweep's (or the entry's) transfer_seed.
SAD_SOURCES = ("base", "other_seed")
_SOURCE_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: registry adapter, where it lives, adapter params, evaluation split."""

    adapter: str
    root: str | None = None  # relative to the sweep's data_root; None for generated sets
    params: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    # this data set's changes to the sweep's threat model (e.g. CUB: 32 steps of 1/255)
    threat: dict[str, Any] = field(default_factory=dict)
    # images evaluated on this data set when its split is smaller than the sweep's
    # evaluate.n (salpipe evaluate refuses an --n beyond the split); None: evaluate.n
    eval_n: int | None = None
    # this data set's changes to the sweep's transfer sources, per name (null drops one)
    transfer: dict[str, TransferSpec | None] = field(default_factory=dict)


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
    """A stage-two student: training method, its params and the sources it reads.

    ``params`` set the method's own hyperparameters; the threat model (eps, steps,
    step size, random start) comes from the sweep's ``threat`` and ``bn_mode`` from
    there too unless set here. ``train``: changes to the shared training config
    (dotted keys, ``{opt.lr: 0.01}``). ``deviations``: setting -> reason, for every
    setting in which this student differs from the sweep's threat model or from a
    student it is compared with (``salpipe check-sweep``); the report prints them.
    ``seeds``: this student's training seeds (None: the sweep's ``seeds``), e.g. three
    for the rows a claim compares and one for the rest.
    """

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    saliency: tuple[str, ...] = ()
    datasets: tuple[str, ...] | None = None
    bn_mode: Literal["eval", "train"] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    deviations: dict[str, str] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class SadModelSpec(SadConfig):
    """A SAD model: recalibrate the BN statistics of student ``base`` (paper 001).

    Every other key is a :class:`~pipeline.config.sad.SadConfig` setting (same defaults
    as ``salpipe sad-calibrate``), except ``seed``: a SAD job's seed is its job's seed.
    ``transfer_seed``: the seed of the ``base`` student run that this model's transfer
    source ``other_seed`` is (None: the sweep's ``transfer_seed``; neither: no
    ``other_seed``). ``seeds``: its jobs' seeds (None: its base student's), each one a
    seed of the base.
    """

    base: str
    datasets: tuple[str, ...] | None = None
    transfer_seed: int | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation: attack preset and number of test images of every student, and of
    every defence (a model with inference-time computation: the ``sad`` entries).

    ``defence_preset`` must hold the adaptive suite (the DAG refuses one that does not,
    :func:`pipeline.evaluate.presets.adaptive_suite_gaps`); ``defence_n``: images for the
    defences (None: ``n``), whose suite costs far more per image.
    """

    preset: str = "quick"
    n: int | None = None  # None = the whole evaluation split
    batch_size: int = 256
    defence_preset: str = "defence"
    defence_n: int | None = None


@dataclass(frozen=True)
class StudentTrain:
    """Architecture and training config shared by all students of a sweep."""

    arch: str
    train: str
    width: int | None = None


@dataclass(frozen=True)
class EvalRun:
    """One evaluation of a model on a data set: the preset, the images (None: the whole
    split) and the seeds it runs on."""

    preset: str
    n: int | None
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Sweep:
    name: str
    datasets: dict[str, DatasetSpec]
    teachers: dict[str, TeacherSpec]
    saliency: dict[str, SourceSpec]
    student: StudentTrain
    students: dict[str, StudentSpec]
    sad: dict[str, SadModelSpec] = field(default_factory=dict)
    threat: ThreatModel | None = None
    seeds: tuple[int, ...] = (0,)
    evaluate: EvalSpec = EvalSpec()
    data_root: str = "../shared/data"
    # transfer sources by name (a preset's transfer entries craft on params.source_name,
    # default "default"); a data set's own `transfer` changes them per name
    transfer: dict[str, TransferSpec] = field(default_factory=dict)
    # the seed of a SAD model's `other_seed` source (its base student's run); a `sad`
    # entry's own transfer_seed wins
    transfer_seed: int | None = None
    # a union sweep (`union: [a, b]`, pipeline/config/union.py): its parts' names, and
    # dataset -> model -> the evaluations the parts ran (never read from a file)
    parts: tuple[str, ...] = field(default=(), init=False)
    evaluations: dict[str, dict[str, tuple[EvalRun, ...]]] = field(
        default_factory=dict, init=False, compare=False)

    # -- which jobs exist -------------------------------------------------------------

    def _on(self, spec_datasets: tuple[str, ...] | None, dataset: str) -> bool:
        return spec_datasets is None or dataset in spec_datasets

    def teachers_for(self, dataset: str) -> list[str]:
        return [t for t, s in self.teachers.items() if self._on(s.datasets, dataset)]

    def sources_for(self, dataset: str) -> list[str]:
        return [s for s, spec in self.saliency.items() if self._on(spec.datasets, dataset)]

    def threat_for(self, dataset: str) -> ThreatModel | None:
        """The sweep's threat model with ``dataset``'s changes (None: no threat model)."""
        changes = self.datasets[dataset].threat
        if self.threat is None:
            return from_dict(ThreatModel, changes, f"datasets.{dataset}.threat") if changes \
                else None
        return from_dict(ThreatModel, {**_threat_dict(self.threat), **changes},
                         f"datasets.{dataset}.threat")

    def bn_mode_for(self, dataset: str, student: str) -> str | None:
        """The student's BatchNorm mode while crafting: its own, else the threat's."""
        own = self.students[student].bn_mode
        threat = self.threat_for(dataset)
        return own or (threat.bn_mode if threat is not None else None)

    def student_params(self, dataset: str, student: str, training: Registry) -> dict[str, Any]:
        """The student's method params with every threat-model field the method has
        filled in from :meth:`threat_for` (so no student trains with a class default
        it did not choose); the student's own params win (a declared deviation)."""
        spec = self.students[student]
        params = dict(spec.params)
        threat = self.threat_for(dataset)
        if threat is None:
            return params
        cls = training.get(spec.method)
        names = {f.name for f in dataclasses.fields(cls)}
        for name, setting in THREAT_FIELDS.items():
            if name in names and name not in params:
                params[name] = _threat_value(threat, setting)
        return params

    def seeds_for(self, model: str) -> tuple[int, ...]:
        """The training seeds of student or SAD model ``model``: its own ``seeds``, else
        (a SAD model) its base student's, else the sweep's."""
        if model in self.sad:
            own = self.sad[model].seeds
            return own if own is not None else self.seeds_for(self.sad[model].base)
        own = self.students[model].seeds
        return own if own is not None else self.seeds

    def all_seeds(self) -> tuple[int, ...]:
        """Every seed some model of the sweep is trained with (sorted)."""
        models = [*self.students, *self.sad]
        return tuple(sorted({s for m in models for s in self.seeds_for(m)} | set(self.seeds)))

    def students_for(self, dataset: str) -> list[str]:
        plain = [s for s, spec in self.students.items() if self._on(spec.datasets, dataset)]
        sad = [s for s, spec in self.sad.items() if self._on(spec.datasets, dataset)]
        return plain + sad

    def transfer_for(self, dataset: str) -> dict[str, TransferSpec]:
        """The named transfer sources on ``dataset``: the sweep's, changed per name by
        the data set's ``transfer`` (a null there drops the name)."""
        named = {**self.transfer, **self.datasets[dataset].transfer}
        return {k: v for k, v in named.items() if v is not None}

    def transfer_seed_of(self, sad: str) -> int | None:
        """The seed of SAD model ``sad``'s ``other_seed`` source (None: it has none)."""
        own = self.sad[sad].transfer_seed
        return own if own is not None else self.transfer_seed

    def preset_for(self, model: str) -> str:
        """The evaluation preset of ``model``: the defence preset for a SAD model."""
        return self.evaluate.defence_preset if model in self.sad else self.evaluate.preset

    def default_n(self, dataset: str, model: str) -> int | None:
        """Images a plain sweep evaluates ``model`` on: the data set's ``eval_n``, else
        ``evaluate.n``; a defence at most ``defence_n`` (None: the whole split)."""
        e, d = self.evaluate, self.datasets[dataset]
        count = d.eval_n or e.n
        if model in self.sad and e.defence_n is not None:
            count = min(e.defence_n, count) if count else e.defence_n
        return count

    def eval_runs(self, dataset: str, model: str) -> tuple[EvalRun, ...]:
        """Every evaluation of ``model`` on ``dataset``: a union sweep's from its parts,
        otherwise one, :meth:`preset_for` on :meth:`default_n` images, every seed."""
        own = self.evaluations.get(dataset, {}).get(model)
        if own is not None or self.parts:
            return own or ()
        return (EvalRun(self.preset_for(model), self.default_n(dataset, model),
                        self.seeds_for(model)),)

    def presets_used(self) -> set[str]:
        """Every preset some evaluation of the sweep runs."""
        return {r.preset for d in self.datasets for m in self.students_for(d)
                for r in self.eval_runs(d, m)}

    def transfer_sources(self, dataset: str, model: str, seed: int
                         ) -> dict[str, tuple[str, int]]:
        """``{name: (model, seed)}``: every transfer source of the evaluation of
        ``model`` (seed ``seed``) on ``dataset``: the named ones of :meth:`transfer_for`
        and, for a SAD model, ``base`` (its base student, this seed) and ``other_seed``
        (its base student, :meth:`transfer_seed_of`)."""
        out = {k: (v.model, v.seed) for k, v in self.transfer_for(dataset).items()}
        if model in self.sad:
            base = self.sad[model].base
            out["base"] = (base, int(seed))
            other = self.transfer_seed_of(model)
            if other is not None:
                out["other_seed"] = (base, other)
        return out


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
    if isinstance(data, dict) and "union" in data:
        from pipeline.config.union import load_union  # the union reads sweeps itself

        return load_union(path, data, registries)
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
    for name, d in p.datasets.items():
        if d.threat:
            p.threat_for(name)  # a typo or bad value in the data set's changes
    for name, s in p.students.items():
        for key in s.deviations:
            if key not in DEVIATION_KEYS:
                raise ConfigError(f"students.{name}.deviations: {key!r} is not a compared "
                                  f"setting; allowed: {', '.join(DEVIATION_KEYS)}")
        if r is not None:
            build_method(r.training, s.method, s.params, f"students.{name}")
            _check_threat(p, name, s, r.training)
            for d in p.datasets:
                if p._on(s.datasets, d):
                    build_method(r.training, s.method, p.student_params(d, name, r.training),
                                 f"students.{name}")
        for src in s.saliency:
            if src not in p.saliency:
                raise ConfigError(
                    f"students.{name}.saliency: source {src!r} is not in saliency "
                    f"({', '.join(p.saliency)})"
                )
        _check_datasets(p, s.datasets, f"students.{name}.datasets")
        if s.seeds is not None:
            _check_seeds(s.seeds, f"students.{name}.seeds")
    _check_seeds(p.seeds, "seeds")
    for name, s in p.sad.items():
        if s.seed != SadConfig.seed:
            raise ConfigError(f"sad.{name}.seed: a SAD job's seed is its job's seed "
                              f"(the sweep's seeds: {list(p.seeds)}, or the entry's "
                              "seeds: [...]); drop the key")
        if r is not None:
            build_method(r.saliency, s.saliency, s.saliency_params, f"sad.{name}.saliency")
        _check_datasets(p, s.datasets, f"sad.{name}.datasets")
        if s.base not in p.students:
            raise ConfigError(f"sad.{name}.base: {s.base!r} is not a student of this sweep")
        if name in p.students:
            raise ConfigError(f"sad.{name}: the name is already a student")
        if s.seeds is not None:
            _check_seeds(s.seeds, f"sad.{name}.seeds")
            base_seeds = p.seeds_for(s.base)
            extra = [k for k in s.seeds if k not in base_seeds]
            if extra:
                raise ConfigError(
                    f"sad.{name}.seeds: {extra} are not seeds of its base {s.base!r} "
                    f"({list(base_seeds)}); a SAD model of seed k recalibrates its base's "
                    "run of seed k")
        if s.transfer_seed is not None:
            _check_transfer_seed(p, s.transfer_seed, f"sad.{name}.transfer_seed")
    if p.transfer_seed is not None:
        _check_transfer_seed(p, p.transfer_seed, "transfer_seed")
    _check_transfer(p)


def _check_seeds(seeds: tuple[int, ...], where: str) -> None:
    if not seeds:
        raise ConfigError(f"{where}: empty; give at least one seed, e.g. [0]")
    bad = [k for k in seeds if isinstance(k, bool) or not isinstance(k, int) or k < 0]
    if bad:
        raise ConfigError(f"{where}: {bad} are not seeds (integers, 0 or more)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: {list(seeds)} repeats a seed")


def _check_transfer_seed(p: Sweep, seed: int, where: str) -> None:
    if seed < 0:
        raise ConfigError(f"{where}: {seed} is not a seed (0 or more)")
    seeds = p.all_seeds()
    if seed in seeds:
        raise ConfigError(f"{where}: {seed} is one of the sweep's seeds {list(seeds)}, "
                          f"so for the job of seed {seed} other_seed would be base itself; "
                          "choose a seed outside seeds (its training job is added)")


def _check_transfer(p: Sweep) -> None:
    """Every named transfer source is a student or SAD model of the data sets it is
    used on, with a seed (an int) outside the sweep's seeds."""
    named = [("transfer", None, p.transfer)]
    named += [(f"datasets.{d}.transfer", d, spec.transfer) for d, spec in p.datasets.items()]
    for where, dataset, sources in named:
        for name, src in sources.items():
            at = f"{where}.{name}"
            if not isinstance(name, str) or not _SOURCE_NAME.match(name):
                raise ConfigError(f"{at}: a transfer source name is [a-z0-9_]+ (a preset "
                                  "transfer entry's params.source_name)")
            if name in SAD_SOURCES:
                raise ConfigError(f"{at}: {name!r} is reserved: a SAD model's 'base' is its "
                                  "base student (the job's seed), its 'other_seed' that "
                                  "student with transfer_seed; choose another name")
            if src is None:
                continue
            if src.seed < 0:
                raise ConfigError(f"{at}.seed: {src.seed} is not a seed (0 or more)")
            if src.seed in p.all_seeds():
                raise ConfigError(
                    f"{at}.seed: {src.seed} is one of the sweep's seeds {list(p.all_seeds())}, so "
                    f"the job {src.model} seed {src.seed} would be attacked with itself; "
                    "choose a seed outside seeds (its training job is added to the DAG)")
            on = [dataset] if dataset is not None else [
                d for d in p.datasets if name not in p.datasets[d].transfer]
            for d in on:
                if src.model not in p.students_for(d):
                    raise ConfigError(
                        f"{at}.model: {src.model!r} is not a student or SAD model of this "
                        f"sweep on data set {d!r} (there: "
                        f"{', '.join(p.students_for(d)) or 'none'})")


def _threat_dict(t: ThreatModel) -> dict[str, Any]:
    return {f.name: _threat_value(t, f.name) for f in dataclasses.fields(t)}


def _threat_value(t: ThreatModel, setting: str) -> Any:
    """A threat setting as a sweep file writes it (budgets as ``k/255`` when exact)."""
    v = getattr(t, setting)
    if setting in ("eps", "step_size"):
        return budget_text(v)
    return v


def budget_text(v: float) -> str:
    """``8/255``, ``2.5/255`` for budgets on a 1/510 grid, else the decimal."""
    k = round(v * 510)
    if abs(k / 510 - v) < 1e-12:
        return f"{k / 2:g}/255"
    return f"{v:.10g}"


def _check_name(registry, name: str, where: str) -> None:
    if name not in registry:
        raise ConfigError(f"{where}: unknown {registry.family} {name!r}; known: {', '.join(registry.names())}")


def _check_threat(p: Sweep, name: str, s: StudentSpec, training: Registry) -> None:
    """An attack-based student needs the sweep's threat model, and may differ from it
    only in settings it declares as deviations."""
    fields = {f.name for f in dataclasses.fields(training.get(s.method))}
    uses = sorted(fields & set(THREAT_FIELDS))
    if not uses:
        return
    if p.threat is None:
        raise ConfigError(
            f"sweep {p.name}: student {name} ({s.method}) crafts training perturbations "
            f"({', '.join(uses)}) but the sweep has no threat model; add "
            "threat: {eps: 8/255, steps: 10, step_size: 2/255, random_start: true, "
            "bn_mode: eval} (every such student inherits it)")
    for key in uses:
        if key not in s.params:
            continue
        setting = THREAT_FIELDS[key]
        for d in p.datasets:
            if not p._on(s.datasets, d):
                continue
            threat = getattr(p.threat_for(d), setting)
            mine = s.params[key]
            if setting in ("eps", "step_size"):
                try:
                    mine = parse_budget(mine, field=f"students.{name}.params.{key}")
                except ValueError as e:
                    raise ConfigError(str(e)) from None
                same = abs(mine - threat) < 1e-12
            else:
                same = mine == threat
            if not same and setting not in s.deviations:
                raise ConfigError(
                    f"students.{name}.params.{key}: {s.params[key]} differs from the sweep's "
                    f"threat model ({setting} {_threat_value(p.threat_for(d), setting)} on "
                    f"{d}); drop it, or declare it: deviations: {{{setting}: <reason>}}")
    if s.bn_mode is not None and "bn_mode" not in s.deviations:
        for d in p.datasets:
            if p._on(s.datasets, d) and s.bn_mode != p.threat_for(d).bn_mode:
                raise ConfigError(
                    f"students.{name}.bn_mode: {s.bn_mode} differs from the sweep's threat "
                    f"model ({p.threat_for(d).bn_mode}); declare it: "
                    "deviations: {bn_mode: <reason>}")


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

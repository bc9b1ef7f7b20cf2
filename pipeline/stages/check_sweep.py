"""``salpipe check-sweep``: is every comparison the report makes a fair one?

The report puts side by side every two students of a data set (one sweep trains them
with one architecture and evaluates them with one preset). A comparison is evidence
only when both sides share the training threat model and budget, so for each pair this
module compares the settings below and calls every difference an error unless one of
the two students declares it (``deviations: {setting: reason}`` in the sweep file):

- the threat model: ``eps`` (SAT's ``eps0``, the noise amplitude of noise baselines),
  ``steps``, ``step_size``, ``random_start`` (how the inner attack starts);
- ``bn_mode`` (BatchNorm while crafting) of students that craft with the model;
- ``epochs``, ``batch_size``, ``opt``, ``sched``, ``aug`` of the training config;
- ``beta`` where both have one (TRADES and its variants);
- ``teacher``: the kind of teacher (std, adv, sparse) behind teacher-made saliency
  sources, where both read one (a data set's own annotations are not a teacher).

A setting one of the two methods does not have is not compared (``standard`` has no
threat model). The Snakefile runs the check before any job; the report prints the
declared deviations beside the rows they touch (``comparisons.json``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ConfigError, build_method, load_yaml_file
from pipeline.config.dag import Dag
from pipeline.config.sweep import budget_text
from pipeline.core.io import atomic_write_bytes
from pipeline.train import TRAINING
from pipeline.train.config import train_config_from

SETTINGS = ("eps", "steps", "step_size", "random_start", "bn_mode", "beta", "epochs",
            "batch_size", "opt", "sched", "aug", "teacher")


@dataclass(frozen=True)
class Pair:
    """Two students of one data set and how their settings compare."""

    dataset: str
    a: str
    b: str
    shared: tuple[str, ...]
    declared: dict[str, str]  # setting -> "a: reason; b: reason" (who declared it)
    undeclared: tuple[str, ...]

    def line(self, settings: dict[str, dict[str, str]]) -> str:
        head = f"{'ERROR' if self.undeclared else 'ok':5s} {self.a} | {self.b}"
        parts = [f"share {', '.join(self.shared) or '-'}"]
        for key, why in self.declared.items():
            parts.append(f"declared {key} ({settings[self.a][key]} vs "
                         f"{settings[self.b][key]}: {why})")
        for key in self.undeclared:
            parts.append(f"UNDECLARED {key} ({settings[self.a][key]} vs "
                         f"{settings[self.b][key]})")
        return f"{head}: " + "; ".join(parts)


@dataclass
class Comparison:
    """The result of the check: per data set, each student's settings and deviations,
    and every pair."""

    sweep: str
    settings: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    deviations: dict[str, dict[str, str]] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)

    @property
    def errors(self) -> list[Pair]:
        return [p for p in self.pairs if p.undeclared]

    def to_json(self) -> dict:
        return {"sweep": self.sweep, "settings": self.settings,
                "deviations": self.deviations,
                "pairs": [dataclasses.asdict(p) for p in self.pairs]}

    def text(self) -> str:
        """What ``salpipe check-sweep`` prints: each data set's settings per student,
        then every pair."""
        out = []
        for ds, table in self.settings.items():
            out.append(f"{ds}: {len(table)} students")
            keys = [k for k in (*SETTINGS, "alpha") if any(k in s for s in table.values())]
            width = max(len(n) for n in table)
            for name, s in table.items():
                cells = "  ".join(f"{k}={s[k]}" for k in keys if k in s)
                out.append(f"  {name:{width}s}  {cells}")
            pairs = [p for p in self.pairs if p.dataset == ds]
            out.append(f"  {len(pairs)} pairs:")
            out += [f"  {p.line(table)}" for p in pairs]
        for name, devs in self.deviations.items():
            for key, why in devs.items():
                out.append(f"deviation: {name} {key}: {why}")
        n_err = len(self.errors)
        out.append(f"sweep {self.sweep}: {len(self.pairs)} pairs compared, "
                   f"{n_err} with an undeclared difference")
        return "\n".join(out)


def _opt(o) -> str:
    if o.name == "adam":
        return f"adam lr {o.lr:g} betas {tuple(o.betas)} wd {o.weight_decay:g}"
    return (f"sgd lr {o.lr:g} momentum {o.momentum:g}{' nesterov' if o.nesterov else ''}"
            f" wd {o.weight_decay:g}")


def _sched(s) -> str:
    extra = {"onecycle": f" pct_start {s.pct_start:g}",
             "multistep": f" at {list(s.milestones)} x{s.gamma:g}",
             "piecewise": f" {list(s.knots)} -> {list(s.values)}"}.get(s.name, "")
    warm = f" warmup {s.warmup_epochs:g}" if s.warmup_epochs else ""
    return s.name + extra + warm


def _aug(a) -> str:
    return ", ".join(f"{f.name} {getattr(a, f.name)}" for f in dataclasses.fields(a))


def student_settings(dag: Dag, dataset: str, student: str,
                     train: dict | None = None) -> dict[str, str]:
    """The compared settings of one student on one data set, as display strings;
    ``train``: the students' training config file, already read (None: read it)."""
    sweep = dag.sweep
    spec = sweep.students[student]
    if train is None:
        train = load_yaml_file(sweep.student.train, "training config") or {}
    cfg = train_config_from(train, dag.student_train(dataset, student),
                            f"students.{student}.train")
    method = build_method(TRAINING, spec.method, dag.student_params(dataset, student),
                          f"students.{student}").for_run(cfg.epochs)
    names = {f.name for f in dataclasses.fields(method)}
    out: dict[str, str] = {}
    eps = "eps" if "eps" in names else "eps0" if "eps0" in names else None
    if eps:
        out["eps"] = budget_text(getattr(method, eps))
    if "steps" in names:
        out["steps"] = str(method.steps)
    if "step_size" in names:
        out["step_size"] = budget_text(method.step_size)
    start = type(method).start
    if "random_start" in names:
        start = "uniform" if method.random_start else "none"
    if start:
        out["random_start"] = start
    if "steps" in names:  # crafts its perturbation with the model
        out["bn_mode"] = cfg.bn_mode
    if "beta" in names:
        out["beta"] = f"{method.beta:g}"
    out.update(epochs=str(cfg.epochs), batch_size=str(cfg.batch_size), opt=_opt(cfg.opt),
               sched=_sched(cfg.sched), aug=_aug(cfg.aug))
    if getattr(method, "alpha", None) is not None and "eps0" in names:
        out["alpha"] = f"{method.alpha:.4g}"  # SAT's schedule, resolved (shown, not compared)
    kinds = sorted({sweep.teachers[t].mode for t in map(dag.source_teacher, spec.saliency)
                    if t is not None})
    if kinds:
        out["teacher"] = "+".join(kinds)
    return out


def compare(dag: Dag) -> Comparison:
    """Every pair of students of every data set, compared setting by setting."""
    sweep = dag.sweep
    result = Comparison(sweep.name)
    result.deviations = {n: dict(s.deviations) for n, s in sweep.students.items()
                         if s.deviations}
    train = load_yaml_file(sweep.student.train, "training config") or {}  # read once
    for ds in sweep.datasets:
        names = [s for s in sweep.students if sweep._on(sweep.students[s].datasets, ds)]
        table = {n: student_settings(dag, ds, n, train) for n in names}
        result.settings[ds] = table
        for a, b in itertools.combinations(names, 2):
            sa, sb = table[a], table[b]
            common = [k for k in SETTINGS if k in sa and k in sb]
            differ = [k for k in common if sa[k] != sb[k]]
            declared = {}
            for k in differ:
                who = [f"{n}: {sweep.students[n].deviations[k]}" for n in (a, b)
                       if k in sweep.students[n].deviations]
                if who:
                    declared[k] = "; ".join(who)
            result.pairs.append(Pair(
                ds, a, b, tuple(k for k in common if k not in differ), declared,
                tuple(k for k in differ if k not in declared)))
    return result


def check(dag: Dag) -> Comparison:
    """:func:`compare`, raising :class:`ConfigError` naming every undeclared difference
    (the Snakefile calls this before any job)."""
    result = compare(dag)
    if result.errors:
        lines = [f"{p.dataset}: {p.a} | {p.b} differ in " + ", ".join(
            f"{k} ({result.settings[p.dataset][p.a][k]} vs "
            f"{result.settings[p.dataset][p.b][k]})" for k in p.undeclared)
            for p in result.errors]
        raise ConfigError(
            f"sweep {dag.sweep.name}: {len(result.errors)} comparison(s) the report would "
            "make are not fair; make the settings equal, or declare each difference on one "
            "of the two students (deviations: {setting: reason}):\n  " + "\n  ".join(lines))
    return result


def write_comparison(result: Comparison, path: str | Path) -> None:
    """``comparisons.json`` (read by ``salpipe report --comparisons``), atomically."""
    atomic_write_bytes(Path(path), (json.dumps(result.to_json(), indent=1) + "\n").encode())


def read_comparison(path: str | Path) -> dict:
    """A ``comparisons.json``; a missing or unreadable file is an error naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"comparisons file {path} does not exist "
                                "(salpipe check-sweep SWEEP --out FILE writes it)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"comparisons file {path} is unreadable ({e}); rerun "
                         "salpipe check-sweep") from None
    if not isinstance(data, dict) or not {"settings", "deviations"} <= set(data):
        raise ValueError(f"comparisons file {path} is not a salpipe comparisons file")
    return data

"""What the Snakefile asks the package: the sweep's lists and each job's arguments.

The Snakefile owns the path scheme and the rules; this module turns the active sweep
into wildcard values and into the options of each ``salpipe`` command, as lists of
words (no shell string to re-parse), so the command a job logs is the whole job (run it
by hand and you get the same result).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.config.sweep import Registries, Sweep, kv_args, load_sweep


@dataclass(frozen=True)
class Dag:
    """The active sweep plus the top-level config (``config/config.yaml``)."""

    sweep: Sweep
    data_root: str
    device: str = "auto"
    scheduler: str | None = None
    registries: Registries | None = None  # the students' params inherit the threat model
    # preset name -> its attack runs (pipeline.evaluate.presets.load_presets, handed in
    # by pipeline.stages.sweep.load_dag: the config layer imports no attack code)
    presets: dict | None = None

    @classmethod
    def from_config(cls, config: dict, sweeps_dir: str | Path = "config/sweeps",
                    registries: Registries | None = None, presets: dict | None = None,
                    ) -> Dag:
        """The DAG of ``config`` (``config/config.yaml``); ``registries`` check the
        sweep's names and ``presets`` are the evaluation presets
        (:func:`pipeline.stages.sweep.load_dag` hands both in)."""
        name = config.get("sweep", "tiny")
        sweep = load_sweep(Path(sweeps_dir) / f"{name}.yaml", registries=registries)
        root = config.get("data_root") or sweep.data_root
        return cls(sweep, root, config.get("device", "auto"), config.get("scheduler"),
                   registries, presets)

    # -- lists for expand() and wildcard constraints ------------------------------------

    def datasets(self) -> list[str]:
        return list(self.sweep.datasets)

    def eval_cells(self) -> list[tuple[str, str, int, str]]:
        """Every evaluation: (dataset, model name, seed, preset)."""
        p = self.sweep
        return [(d, m, seed, r.preset) for d in p.datasets for m in p.students_for(d)
                for r in p.eval_runs(d, m) for seed in r.seeds]

    def cells(self) -> list[tuple[str, str, int]]:
        """Every evaluated (dataset, model name, seed)."""
        return list(dict.fromkeys((d, m, s) for d, m, s, _ in self.eval_cells()))

    def presets_used(self) -> list[str]:
        """Every preset some evaluation runs (sorted)."""
        return sorted(self.sweep.presets_used())

    def teacher_cells(self) -> list[tuple[str, str]]:
        return [(d, t) for d in self.sweep.datasets for t in self.sweep.teachers_for(d)]

    def source_cells(self) -> list[tuple[str, str]]:
        return [(d, s) for d in self.sweep.datasets for s in self.sweep.sources_for(d)]

    def is_sad(self, name: str) -> bool:
        return name in self.sweep.sad

    # -- transfer sources ---------------------------------------------------------------

    @cached_property
    def _preset_sources(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(str(r.params.get("source_name") or "default")
                                for r in runs if r.name == "transfer")
                for name, runs in (self.presets or {}).items()}

    def preset_sources(self, preset: str | None = None) -> frozenset[str]:
        """The source names the transfer entries of ``preset`` (default: the sweep's
        evaluation preset) craft on (``params.source_name``, default ``default``):
        only those are passed to the evaluations and trained, so a preset without
        transfer entries adds no job."""
        name = preset or self.sweep.evaluate.preset
        if self.presets is None:
            raise ValueError("Dag.preset_sources needs the presets "
                             "(pipeline.stages.sweep.load_dag)")
        if name not in self._preset_sources:
            raise ConfigError(f"sweep {self.sweep.name}: unknown preset {name!r}; presets: "
                              f"{', '.join(self._preset_sources)}")
        return self._preset_sources[name]

    def preset_for(self, model: str) -> str:
        """The evaluation preset of ``model`` in a plain sweep (the defence preset for a
        SAD model); :meth:`eval_cells` has every evaluation of a union sweep."""
        return self.sweep.preset_for(model)

    def transfer_sources(self, dataset: str, model: str, seed: int,
                         preset: str | None = None) -> dict[str, tuple[str, int]]:
        """``{name: (model, seed)}`` of the transfer sources the evaluation of ``model``
        (``seed``) on ``dataset`` with ``preset`` (default :meth:`preset_for`) uses: the
        sweep's (:meth:`~pipeline.config.sweep.Sweep.transfer_sources`) that the
        preset's transfer entries name. A name the preset uses but the sweep lacks for
        this job is not passed: ``salpipe evaluate`` skips those entries with a flag."""
        named = self.sweep.transfer_sources(dataset, model, seed)
        used = self.preset_sources(preset or self.preset_for(model))
        return {k: v for k, v in sorted(named.items()) if k in used}

    def transfer_jobs(self) -> list[tuple[str, str, int]]:
        """(dataset, model, seed) of every source model an evaluation needs that is not
        itself evaluated (e.g. ``standard`` seed 1 when ``seeds`` is ``[0]``): a training
        (or SAD) job of the DAG whose only consumers are the evaluations."""
        jobs = {(d, m, s) for d, model, seed, preset in self.eval_cells()
                for m, s in self.transfer_sources(d, model, seed, preset).values()}
        return sorted(jobs - set(self.cells()))

    # -- per-job arguments --------------------------------------------------------------
    # Each ``*_args`` method returns the words of a command line (a list, never a string
    # for a shell to split): the rules format them with ``{params.args:q}``, so Snakemake
    # quotes every word and a path with a space, a ``;`` or a ``$(...)`` stays one word.

    def prepare_args(self, dataset: str) -> list[str]:
        spec = self.sweep.datasets[dataset]
        args = ["--dataset", f"{spec.adapter}"]
        if spec.root is not None:
            args += ["--root", str(Path(self.data_root) / spec.root)]
        return args + _kv("-p", spec.params)

    def _test_split(self, dataset: str) -> list[str]:
        """Per-epoch clean accuracy is measured on the data set's evaluation split."""
        return ["-s", f"test_split={self.sweep.datasets[dataset].eval_split}"]

    def teacher_args(self, dataset: str, teacher: str) -> list[str]:
        t = self.sweep.teachers[teacher]
        width = ["--width", f"{t.width}"] if t.width is not None else []
        return ["--arch", f"{t.arch}", *width, "--mode", f"{t.mode}", "--config", f"{t.train}",
                *self._test_split(dataset), *_kv("-p", t.params)]

    def teacher_config(self, teacher: str) -> str:
        return self.sweep.teachers[teacher].train

    def source_teacher(self, source: str) -> str | None:
        origin = source.partition(".")[0]
        return None if origin == "annotation" else origin

    def source_args(self, source: str) -> list[str]:
        """Options of precompute-saliency besides store, split and teacher."""
        spec = self.sweep.saliency[source]
        if self.source_teacher(source) is None:
            return ["--source", source]
        method = spec.method or source.partition(".")[2]
        args = ["--method", f"{method}", "--target", f"{spec.target}", "--source", source]
        if self.scheduler:
            args += ["--scheduler", f"{self.scheduler}"]
        return args + _kv("-p", spec.params)

    def student_sources(self, student: str) -> list[str]:
        return list(self.sweep.students[student].saliency)

    def student_params(self, dataset: str, student: str) -> dict:
        """The method params a student trains with: its own plus every threat-model
        field of its method from the sweep's threat model (nothing left to a class
        default the sweep did not choose)."""
        if self.registries is None:
            raise ValueError("Dag.student_params needs the registries "
                             "(pipeline.stages.sweep.load_dag)")
        return self.sweep.student_params(dataset, student, self.registries.training)

    def student_train(self, dataset: str, student: str) -> dict:
        """Training-config changes of a student: its ``bn_mode`` (else the threat
        model's) and its ``train`` entries."""
        s = self.sweep.students[student]
        bn = self.sweep.bn_mode_for(dataset, student)
        return {**({"bn_mode": bn} if bn else {}), **s.train}

    def student_args(self, dataset: str, student: str, seed: int) -> list[str]:
        s, net = self.sweep.students[student], self.sweep.student
        width = ["--width", f"{net.width}"] if net.width is not None else []
        sal = [word for src in s.saliency for word in ("--saliency", f"{src}")]
        return ["--method", f"{s.method}", *sal, "--arch", f"{net.arch}", *width,
                "--config", f"{net.train}", *self._test_split(dataset),
                *_kv("-s", self.student_train(dataset, student)), "--seed", f"{seed}",
                *_kv("-p", self.student_params(dataset, student))]

    def student_config(self) -> str:
        return self.sweep.student.train

    def sad_base(self, name: str) -> str:
        return self.sweep.sad[name].base

    def sad_args(self, name: str, seed: int) -> list[str]:
        """Options of sad-calibrate besides model, store and out: ``--seed`` (the job's)
        and every setting of the sweep entry that differs from the
        :class:`~pipeline.config.sad.SadConfig` defaults, as ``-s key=value`` (mappings
        as dotted keys, ``-s attack_params.eps=8/255``)."""
        settings = self.sweep.sad[name].overrides()
        settings.pop("seed", None)  # the job's seed, never the entry's
        pairs = {}
        for key, value in settings.items():
            if isinstance(value, dict):
                pairs.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                pairs[key] = value
        pairs = {k: "null" if v is None else v for k, v in pairs.items()}
        return ["--seed", f"{int(seed)}", *_kv("-s", pairs)]

    def eval_args(self, dataset: str, sources: Mapping[str, str] | None = None,
                  model: str | None = None, preset: str | None = None) -> list[str]:
        """Options of evaluate besides model, store and out; ``sources``: ``{name: run
        directory}`` of the job's transfer sources (the Snakefile's paths of
        :meth:`transfer_sources`), one ``--source-model NAME=DIR`` each. ``preset``
        (default :meth:`preset_for`, a defence's the defence preset) picks the
        evaluation of ``model`` and its images (a defence: ``defence_n``)."""
        e, d = self.sweep.evaluate, self.sweep.datasets[dataset]
        if model is None:
            preset, count = preset or e.preset, d.eval_n or e.n
        else:
            preset = preset or self.preset_for(model)
            runs = [r for r in self.sweep.eval_runs(dataset, model) if r.preset == preset]
            if not runs:
                raise ConfigError(f"sweep {self.sweep.name}: {model} on {dataset} is not "
                                  f"evaluated with preset {preset!r}")
            count = runs[0].n
        n = ["--n", f"{count}"] if count else []
        models = [w for name in sorted(sources or {})
                  for w in ("--source-model", f"{name}={sources[name]}")]
        return ["--preset", f"{preset}", "--split", f"{d.eval_split}", *n,
                "--batch-size", f"{e.batch_size}", *models]


def _kv(flag: str, params: dict) -> list[str]:
    """:func:`~pipeline.config.sweep.kv_args` as words: ``[flag, 'key=value', ...]``."""
    return shlex.split(kv_args(flag, params))

"""What the Snakefile asks the package: the sweep's lists and each job's arguments.

The Snakefile owns the path scheme and the rules; this module turns the active sweep
into wildcard values and into the options of each ``salpipe`` command, as lists of
words (no shell string to re-parse), so the command a job logs is the whole job (run it
by hand and you get the same result).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from pipeline.config.sweep import Registries, Sweep, kv_args, load_sweep


@dataclass(frozen=True)
class Dag:
    """The active sweep plus the top-level config (``config/config.yaml``)."""

    sweep: Sweep
    data_root: str
    device: str = "auto"
    scheduler: str | None = None
    registries: Registries | None = None  # the students' params inherit the threat model

    @classmethod
    def from_config(cls, config: dict, sweeps_dir: str | Path = "config/sweeps",
                    registries: Registries | None = None) -> Dag:
        """The DAG of ``config`` (``config/config.yaml``); ``registries`` check the
        sweep's names (:func:`pipeline.stages.sweep.load_dag` hands them in)."""
        name = config.get("sweep", "tiny")
        sweep = load_sweep(Path(sweeps_dir) / f"{name}.yaml", registries=registries)
        root = config.get("data_root") or sweep.data_root
        return cls(sweep, root, config.get("device", "auto"), config.get("scheduler"),
                   registries)

    # -- lists for expand() and wildcard constraints ------------------------------------

    def datasets(self) -> list[str]:
        return list(self.sweep.datasets)

    def cells(self) -> list[tuple[str, str, int]]:
        """Every evaluated (dataset, model name, seed)."""
        p = self.sweep
        return [(d, s, seed) for d in p.datasets for s in p.students_for(d) for seed in p.seeds]

    def teacher_cells(self) -> list[tuple[str, str]]:
        return [(d, t) for d in self.sweep.datasets for t in self.sweep.teachers_for(d)]

    def source_cells(self) -> list[tuple[str, str]]:
        return [(d, s) for d in self.sweep.datasets for s in self.sweep.sources_for(d)]

    def is_sad(self, name: str) -> bool:
        return name in self.sweep.sad

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

    def eval_args(self, dataset: str) -> list[str]:
        e, d = self.sweep.evaluate, self.sweep.datasets[dataset]
        split, count = d.eval_split, d.eval_n or e.n
        n = ["--n", f"{count}"] if count else []
        return ["--preset", f"{e.preset}", "--split", f"{split}", *n,
                "--batch-size", f"{e.batch_size}"]


def _kv(flag: str, params: dict) -> list[str]:
    """:func:`~pipeline.config.sweep.kv_args` as words: ``[flag, 'key=value', ...]``."""
    return shlex.split(kv_args(flag, params))

"""What the Snakefile asks the package: the sweep's lists and each job's arguments.

The Snakefile owns the path scheme and the rules; this module turns the active sweep
into wildcard values and into the options of each ``salpipe`` command, so the command a
job logs is the whole job (run it by hand and you get the same result).
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

    @classmethod
    def from_config(cls, config: dict, sweeps_dir: str | Path = "config/sweeps",
                    registries: Registries | None = None) -> Dag:
        """The DAG of ``config`` (``config/config.yaml``); ``registries`` check the
        sweep's names (:func:`pipeline.stages.sweep.load_dag` hands them in)."""
        name = config.get("sweep", "tiny")
        sweep = load_sweep(Path(sweeps_dir) / f"{name}.yaml", registries=registries)
        root = config.get("data_root") or sweep.data_root
        return cls(sweep, root, config.get("device", "auto"), config.get("scheduler"))

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

    def prepare_args(self, dataset: str) -> str:
        spec = self.sweep.datasets[dataset]
        args = [f"--dataset {spec.adapter}"]
        if spec.root is not None:
            args.append(f"--root {shlex.quote(str(Path(self.data_root) / spec.root))}")
        return " ".join(args + [kv_args("-p", spec.params)])

    def _test_split(self, dataset: str) -> str:
        """Per-epoch clean accuracy is measured on the data set's evaluation split."""
        return f"-s test_split={self.sweep.datasets[dataset].eval_split}"

    def teacher_args(self, dataset: str, teacher: str) -> str:
        t = self.sweep.teachers[teacher]
        width = f" --width {t.width}" if t.width is not None else ""
        return (f"--arch {t.arch}{width} --mode {t.mode} --config {shlex.quote(t.train)} "
                f"{self._test_split(dataset)} " + kv_args("-p", t.params)).strip()

    def teacher_config(self, teacher: str) -> str:
        return self.sweep.teachers[teacher].train

    def source_teacher(self, source: str) -> str | None:
        origin = source.partition(".")[0]
        return None if origin == "annotation" else origin

    def source_args(self, source: str) -> str:
        """Options of precompute-saliency besides store, split and teacher."""
        spec = self.sweep.saliency[source]
        if self.source_teacher(source) is None:
            return f"--source {source}"
        method = spec.method or source.partition(".")[2]
        args = [f"--method {method}", f"--target {spec.target}", f"--source {source}"]
        if self.scheduler:
            args.append(f"--scheduler {shlex.quote(self.scheduler)}")
        return " ".join(args + [kv_args("-p", spec.params)]).strip()

    def student_sources(self, student: str) -> list[str]:
        return list(self.sweep.students[student].saliency)

    def student_args(self, dataset: str, student: str, seed: int) -> str:
        s, net = self.sweep.students[student], self.sweep.student
        width = f" --width {net.width}" if net.width is not None else ""
        sal = " ".join(f"--saliency {src}" for src in s.saliency)
        return " ".join(x for x in [
            f"--method {s.method}", sal, f"--arch {net.arch}{width}",
            f"--config {shlex.quote(net.train)}", self._test_split(dataset), f"--seed {seed}",
            kv_args("-p", s.params),
        ] if x)

    def student_config(self) -> str:
        return self.sweep.student.train

    def sad_base(self, name: str) -> str:
        return self.sweep.sad[name].base

    def sad_args(self, name: str, seed: int) -> str:
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
        return " ".join(x for x in [f"--seed {int(seed)}", kv_args("-s", pairs)] if x)

    def eval_args(self, dataset: str) -> str:
        e = self.sweep.evaluate
        split = self.sweep.datasets[dataset].eval_split
        n = f" --n {e.n}" if e.n else ""
        return f"--preset {e.preset} --split {split}{n} --batch-size {e.batch_size}"

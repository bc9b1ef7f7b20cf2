"""A union sweep: ``union: [cpu_sat, cpu_sip, cpu_sad, cpu_int]`` in a sweep file runs
every job of those sweeps once.

The parts are read from the union file's folder and merged by name. A data set, teacher,
saliency source, student or SAD model that several parts name must be the same in each
(its ``datasets`` and ``seeds`` are joined); the threat model, the students' network and
training config, and the transfer settings must agree. A model keeps every evaluation
its parts ran (:class:`~pipeline.config.sweep.EvalRun`: preset, images, seeds), so each
part's results are reproduced job for job, and a model two parts train alike is trained
once. Anything that differs is an error naming the two parts and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError
from pipeline.config.sweep import (
    EvalRun,
    Registries,
    Sweep,
    load_sweep,
    validate_sweep,
)

UNION_KEYS = {"name", "union", "data_root"}


def load_union(path: Path, data: dict, registries: Registries | None = None) -> Sweep:
    """The union sweep of file ``path`` (``data``: its mapping): its parts loaded from
    the same folder and merged (module doc); checked as any sweep."""
    where = f"sweep {path.stem}"
    unknown = sorted(set(data) - UNION_KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: a union sweep holds only "
                          f"{', '.join(sorted(UNION_KEYS))}; put the rest in its parts")
    names = data["union"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{where}.union: give a list of sweep names, e.g. [cpu_sat, cpu_sip]")
    if path.stem in names or len(set(names)) != len(names):
        raise ConfigError(f"{where}.union: {names} names itself or a sweep twice")
    parts = []
    for name in names:
        file = path.parent / f"{name}.yaml"
        if not file.is_file():
            raise ConfigError(f"{where}.union: no sweep file {file}")
        overrides = {"data_root": data["data_root"]} if data.get("data_root") else None
        part = load_sweep(file, overrides, registries)
        if part.parts:
            raise ConfigError(f"{where}.union: {name} is itself a union; name its parts")
        parts.append(part)
    merged = merge(str(data.get("name") or path.stem), parts)
    validate_sweep(merged, registries)
    return merged


def _conflict(key: str, a: str, b: str, va: Any, vb: Any) -> ConfigError:
    return ConfigError(f"union: {key} differs between {a} and {b} ({va!r} vs {vb!r}); "
                       "a union runs one job per name, so rename one or make them agree")


def _on(spec_datasets, part: Sweep) -> tuple[str, ...]:
    return tuple(part.datasets) if spec_datasets is None else tuple(spec_datasets)


def _join(key: str, mine: dict, owner: dict, name: str, part: Sweep, spec,
          joined=("datasets",)) -> None:
    """Add ``spec`` (``part``'s entry ``name`` of mapping ``key``) to ``mine``, joining
    the fields in ``joined`` and requiring every other field to agree."""
    if dataclasses.is_dataclass(spec) and "datasets" in joined:
        spec = dataclasses.replace(spec, datasets=_on(spec.datasets, part))
    if name not in mine:
        mine[name], owner[name] = spec, part.name
        return
    old = mine[name]
    for f in dataclasses.fields(old):
        if not f.init or f.name in joined:
            continue
        if getattr(old, f.name) != getattr(spec, f.name):
            raise _conflict(f"{key}.{name}.{f.name}", owner[name], part.name,
                            getattr(old, f.name), getattr(spec, f.name))
    changes = {}
    for j in joined:
        a, b = getattr(old, j), getattr(spec, j)
        if a is None or b is None:
            changes[j] = a if b is None else b
        else:
            changes[j] = tuple(dict.fromkeys([*a, *b]))
    mine[name] = dataclasses.replace(old, **changes)


def merge(name: str, parts: list[Sweep]) -> Sweep:
    """One sweep with every job of ``parts`` (module doc)."""
    first = parts[0]
    same = ("student", "threat", "data_root")
    for p in parts[1:]:
        for key in same:
            if getattr(p, key) != getattr(first, key):
                raise _conflict(key, first.name, p.name, getattr(first, key), getattr(p, key))
    datasets, teachers, saliency, students, sad, transfer = {}, {}, {}, {}, {}, {}
    owners: dict[str, dict] = {k: {} for k in ("d", "t", "s", "st", "sad", "tr", "ev")}
    transfer_seed, seed_owner = None, ""
    runs: dict[str, dict[str, list[EvalRun]]] = {}
    for p in parts:
        for d, spec in p.datasets.items():
            # eval_n belongs to the part's evaluations, not to the data set
            _join("datasets", datasets, owners["d"], d, p,
                  dataclasses.replace(spec, eval_n=None), joined=())
        for t, spec in p.teachers.items():
            _join("teachers", teachers, owners["t"], t, p, spec)
        for src, spec in p.saliency.items():
            _join("saliency", saliency, owners["s"], src, p, spec)
        for m, spec in p.students.items():
            _join("students", students, owners["st"], m, p,
                  dataclasses.replace(spec, seeds=p.seeds_for(m)), joined=("datasets", "seeds"))
        for m, spec in p.sad.items():
            _join("sad", sad, owners["sad"], m, p,
                  dataclasses.replace(spec, seeds=p.seeds_for(m)), joined=("datasets", "seeds"))
        for k, v in p.transfer.items():
            if k in transfer and transfer[k] != v:
                raise _conflict(f"transfer.{k}", owners["tr"][k], p.name, transfer[k], v)
            transfer[k], owners["tr"][k] = v, p.name
        if p.transfer_seed is not None:
            if transfer_seed is not None and transfer_seed != p.transfer_seed:
                raise _conflict("transfer_seed", seed_owner, p.name, transfer_seed,
                                p.transfer_seed)
            transfer_seed, seed_owner = p.transfer_seed, p.name
        for d in p.datasets:
            for m in p.students_for(d):
                for r in p.eval_runs(d, m):
                    have = runs.setdefault(d, {}).setdefault(m, [])
                    clash = [o for o in have if o.preset == r.preset and o.n != r.n]
                    if clash:
                        raise _conflict(f"the {r.preset} evaluation of {m} on {d} (images)",
                                        owners["ev"][(d, m, r.preset)], p.name,
                                        clash[0].n, r.n)
                    owners["ev"].setdefault((d, m, r.preset), p.name)
                    same_preset = [o for o in have if o.preset == r.preset]
                    if same_preset:
                        o = same_preset[0]
                        have[have.index(o)] = EvalRun(o.preset, o.n,
                                                      tuple(sorted({*o.seeds, *r.seeds})))
                    else:
                        have.append(r)
    seeds = tuple(sorted({s for spec in [*students.values(), *sad.values()]
                          for s in spec.seeds}))
    sweep = Sweep(name=name, datasets=datasets, teachers=teachers, saliency=saliency,
                  student=first.student, students=students, sad=sad, threat=first.threat,
                  seeds=seeds, evaluate=first.evaluate, data_root=first.data_root,
                  transfer=transfer, transfer_seed=transfer_seed)
    object.__setattr__(sweep, "parts", tuple(p.name for p in parts))
    object.__setattr__(sweep, "evaluations", {
        d: {m: tuple(rs) for m, rs in by.items()} for d, by in runs.items()})
    return sweep

"""Named attack presets (``config/presets.yaml``): which attacks, budgets and parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.attacks import ATTACKS
from pipeline.config import ConfigError, build_method
from pipeline.core.budget import parse_budget

DEFAULT_PRESETS = Path(__file__).resolve().parents[2] / "config" / "presets.yaml"


@dataclass(frozen=True)
class AttackRun:
    """One row group of an evaluation: attack ``name`` at budget ``eps`` with ``params``.

    ``label`` names the row in tables (``pgd20``, ``weak_pgd``); ``eps`` is None for
    attacks without a budget of their own.
    """

    label: str
    name: str
    eps: float | None
    params: dict[str, Any] = field(default_factory=dict)

    def build(self, extra: dict | None = None):
        """The attack object (``ATTACKS``), ``eps`` and ``extra`` merged into ``params``."""
        params = {**self.params, **(extra or {})}
        if self.eps is not None:
            params["eps"] = self.eps
        return build_method(ATTACKS, self.name, params, f"attack {self.label}")

    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True, default=str)


def load_presets(path: str | Path | None = None) -> dict[str, list[AttackRun]]:
    """Every preset of ``path`` (default ``config/presets.yaml``), includes resolved.

    Each attack entry is validated by building it (an unknown attack or parameter is a
    :class:`ConfigError` naming the preset and the entry).
    """
    path = Path(path) if path is not None else DEFAULT_PRESETS
    if not path.is_file():
        raise FileNotFoundError(f"presets file {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    presets = raw.get("presets")
    if not isinstance(presets, dict):
        raise ConfigError(f"{path}: expected a top-level 'presets' mapping")
    out: dict[str, list[AttackRun]] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> list[AttackRun]:
        if name in out:
            return out[name]
        if name not in presets:
            raise ConfigError(f"{path}: unknown preset {name!r}; known: {', '.join(presets)}")
        if name in stack:
            raise ConfigError(f"{path}: preset include cycle {' -> '.join(stack + (name,))}")
        spec = presets[name] or {}
        runs: list[AttackRun] = []
        for inc in spec.get("include", []):
            runs += resolve(inc, stack + (name,))
        for i, entry in enumerate(spec.get("attacks", [])):
            runs += _entry_runs(entry, f"{path}: presets.{name}.attacks[{i}]")
        seen: dict[tuple, AttackRun] = {}
        for r in runs:  # an included run listed twice is run once
            other = seen.setdefault((r.label, r.eps), r)
            if other != r:
                raise ConfigError(f"{path}: preset {name!r} has two {r.label!r} entries at "
                                  f"eps {r.eps} with different attacks or params; relabel one")
        out[name] = list(seen.values())
        return out[name]

    for name in presets:
        resolve(name, ())
    return out


def _entry_runs(entry: Any, where: str) -> list[AttackRun]:
    if not isinstance(entry, dict) or "attack" not in entry:
        raise ConfigError(f"{where}: expected a mapping with an 'attack' key")
    unknown = set(entry) - {"attack", "label", "eps", "params"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: attack, label, "
                          "eps, params")
    eps_list = entry.get("eps", [None])
    eps_list = eps_list if isinstance(eps_list, list) else [eps_list]
    runs = []
    for e in eps_list:
        eps = None if e is None else parse_budget(e, field=f"{where}.eps")
        run = AttackRun(str(entry.get("label", entry["attack"])), entry["attack"], eps,
                        dict(entry.get("params") or {}))
        run.build({"source": "."} if run.name == "transfer" else None)  # validate now
        runs.append(run)
    return runs

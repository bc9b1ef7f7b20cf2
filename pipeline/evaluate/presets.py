"""Named attack presets (``pipeline/resources/presets.yaml``, package data): which
attacks, budgets and parameters."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.attacks import ATTACKS
from pipeline.config import ConfigError, build_method
from pipeline.core.budget import parse_budget

# package data (pipeline/resources/, in the wheel), found through importlib.resources
DEFAULT_PRESETS = resources.files("pipeline") / "resources" / "presets.yaml"
_LABEL = re.compile(r"^[a-z0-9_]+$")
# ``views`` of a preset entry: each, whole, or these names (pipeline/evaluate/views.py)
VIEW_NAMES = ("each", "whole", "adaptive", "adaptive_bpda", "smooth", "nonadaptive")
WHEN = ("always", "random")
ENTRY_KEYS = ("attack", "label", "eps", "params", "views", "when", "survivors")


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
    # the views of a defence this run is crafted in (pipeline/evaluate/views.py):
    # ("each",) every view; ("whole",) once, on the whole defence (black-box and
    # transfer attacks, whose result does not depend on the view); or view names
    views: tuple[str, ...] = ("each",)
    # ``always``; ``random``: only when the forward pass is random (EOT attacks)
    when: str = "always"
    # True: crafted only on the examples every earlier run at this budget (in every view
    # evaluated so far) left robust, as AutoAttack runs APGD-T and Square after APGD-CE;
    # its accuracy row is then the worst case so far, not the attack's own accuracy
    survivors: bool = False

    def narrow(self, todo, index):
        """The examples this run attacks, given ``todo`` (bool [N]) and the dataset
        ``index`` [N]; a view-aware run also drops those broken in earlier views."""
        return todo

    def build(self, extra: dict | None = None, where: str | None = None):
        """The attack object (``ATTACKS``), ``eps`` and ``extra`` merged into ``params``.

        ``where`` (e.g. ``presets.yaml: presets.sat.attacks[2]``) prefixes any error.
        """
        params = {**self.params, **(extra or {})}
        if self.eps is not None:
            params["eps"] = self.eps
        if where is None:
            return build_method(ATTACKS, self.name, params, f"attack {self.label}")
        if self.name not in ATTACKS:  # the entry, not its params, is at fault
            return build_method(ATTACKS, self.name, params, where)
        try:
            return build_method(ATTACKS, self.name, params, f"{where}.params")
        except ConfigError:
            raise
        except (TypeError, ValueError, KeyError) as e:  # an attack's own checks
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ConfigError(f"{where} (attack {self.name!r}): {msg}") from None

    def params_json(self) -> str:
        params = {**self.params, "survivors": True} if self.survivors else self.params
        return json.dumps(params, sort_keys=True, default=str)


def runs_digest(runs) -> str:
    """A digest of attack runs (label, attack, budget, parameters, views, when, survivors):
    what an evaluation under them attacks. It names an evaluation's journal and gives
    the evaluate rule's ``preset_digest`` param (:func:`pipeline.stages.sweep.preset_digest`)."""
    spec = [[r.label, r.name, None if r.eps is None else float(r.eps), r.params_json(),
             list(r.views), r.when, bool(r.survivors)] for r in runs]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


def load_presets(path: str | Path | None = None) -> dict[str, list[AttackRun]]:
    """Every preset of ``path`` (default :data:`DEFAULT_PRESETS`), includes resolved.

    Each attack entry is validated by building it (an unknown attack or parameter is a
    :class:`ConfigError` naming the file, the preset and the entry, e.g.
    ``p.yaml: presets.sat.attacks[2].params.stepz: unknown key``), so a bad entry of any
    preset is refused before anything is evaluated.
    """
    path = Path(path) if path is not None else DEFAULT_PRESETS
    if path.is_dir():
        raise FileNotFoundError(f"presets file {path} is a folder; give a presets YAML "
                                "file (--presets)")
    if not path.is_file():
        raise FileNotFoundError(f"presets file {path} not found; fix --presets or leave it "
                                f"out to use {DEFAULT_PRESETS}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"presets file {path} is not valid YAML{at}: {why}") from None
    raw = {} if raw is None else raw
    presets = raw.get("presets") if isinstance(raw, dict) else None
    if not isinstance(presets, dict):
        raise ConfigError(f"{path}: expected a top-level 'presets' mapping of preset "
                          "names to {include, attacks}")
    out: dict[str, list[AttackRun]] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> list[AttackRun]:
        if name in out:
            return out[name]
        if name in stack:
            raise ConfigError(f"{path}: preset include cycle {' -> '.join(stack + (name,))}")
        spec = presets[name] if presets[name] is not None else {}
        where = f"{path}: presets.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping with 'attacks' (and/or "
                              f"'include'), got {type(spec).__name__}")
        unknown = set(spec) - {"include", "attacks"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; "
                              "allowed: include, attacks")
        runs: list[AttackRun] = []
        for inc in _as_list(spec.get("include"), f"{where}.include"):
            if not isinstance(inc, str) or inc not in presets:
                raise ConfigError(f"{where}.include: unknown preset {inc!r}"
                                  f"{suggest(str(inc), list(presets))}; known: "
                                  f"{', '.join(presets)}")
            runs += resolve(inc, stack + (name,))
        for i, entry in enumerate(_as_list(spec.get("attacks"), f"{where}.attacks")):
            runs += _entry_runs(entry, f"{where}.attacks[{i}]")
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


def suggest(name: str, known: list[str]) -> str:
    """`` (did you mean 'quick'?)`` for the nearest of ``known``, else ``""``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def select_preset(presets: dict[str, list[AttackRun]], name: str,
                  path: str | Path | None = None) -> list[AttackRun]:
    """The runs of preset ``name``; an unknown name is a :class:`ConfigError` (a
    ValueError) naming the nearest known preset and listing them all."""
    if name in presets:
        return presets[name]
    where = Path(path) if path is not None else DEFAULT_PRESETS
    raise ConfigError(f"unknown preset {name!r}{suggest(str(name), list(presets))}; presets "
                     f"in {where}: {', '.join(presets)} (fix --preset, or add it there)")


def _as_list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
    return value


def _entry_runs(entry: Any, where: str) -> list[AttackRun]:
    if not isinstance(entry, dict) or "attack" not in entry:
        raise ConfigError(f"{where}: expected a mapping with an 'attack' key, got {entry!r}")
    unknown = set(entry) - set(ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; allowed: "
                          f"{', '.join(ENTRY_KEYS)}")
    views, when = entry.get("views", "each"), entry.get("when", "always")
    views = tuple(views) if isinstance(views, list) else (views,)
    bad = [v for v in views if v not in VIEW_NAMES]
    if bad or not views or (len(views) > 1 and set(views) & {"each", "whole"}):
        raise ConfigError(f"{where}.views: {list(views)!r}: give each, whole, or a list of "
                          f"views ({', '.join(VIEW_NAMES[2:])})")
    if when not in WHEN:
        raise ConfigError(f"{where}.when: {when!r} is not one of {', '.join(WHEN)}")
    survivors = entry.get("survivors", False)
    if not isinstance(survivors, bool):
        raise ConfigError(f"{where}.survivors: {survivors!r}: give true or false")
    name = entry["attack"]
    if not isinstance(name, str) or name not in ATTACKS:
        raise ConfigError(f"{where}: unknown attack {name!r}"
                          f"{suggest(str(name), ATTACKS.names())}; known: "
                          f"{', '.join(ATTACKS.names())}")
    label = str(entry.get("label", name))
    if not _LABEL.match(label):
        raise ConfigError(f"{where}.label: {label!r} must match [a-z0-9_]+ (it names the "
                          "rows of the results table)")
    params = entry.get("params")
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"{where}.params: expected a mapping of the attack's parameters, "
                          f"got {type(params).__name__} {params!r}")
    eps_list = entry.get("eps", [None])
    eps_list = eps_list if isinstance(eps_list, list) else [eps_list]
    runs = []
    for e in eps_list:
        try:
            eps = None if e is None else parse_budget(e, field=f"{where}.eps")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        run = AttackRun(label, name, eps, dict(params or {}), views, when, survivors)
        attack = run.build({"source": "."} if name == "transfer" else None, where)  # validate
        if name == "transfer":  # its inner attack is built only when it runs: check it now
            try:
                attack.inner()
            except (TypeError, ValueError, KeyError) as err:
                msg = str(err).replace("transfer.attack", "params.attack_params", 1)
                raise ConfigError(f"{where} (transfer's inner attack "
                                  f"{attack.attack!r}): {msg}") from None
        runs.append(run)
    return runs


ADAPTIVE_GRID = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
MIN_APGD_STEPS = 100
MIN_SQUARE_QUERIES = 5000


def _in_view(run: AttackRun, view: str) -> bool:
    return "each" in run.views or view in run.views


def _apgd(run: AttackRun, which: str) -> bool:
    """An AutoAttack run that includes APGD ``which`` (``apgd-ce``/``apgd-t``) with at
    least :data:`MIN_APGD_STEPS` iterations."""
    if run.name != "autoattack":
        return False
    version = run.params.get("version", "standard")
    attacks = run.params.get("attacks") or ()
    has = which in attacks if version == "custom" else (
        which == "apgd-ce" or version in ("standard", "plus"))
    steps = run.params.get("steps")
    return has and (steps is None or int(steps) >= MIN_APGD_STEPS)


def adaptive_suite_gaps(runs: list[AttackRun], grid: tuple[float, ...] = ADAPTIVE_GRID,
                        ) -> list[str]:
    """What a defence preset lacks of the adaptive suite (empty: complete), per budget
    of ``grid``: APGD-CE and targeted APGD-DLR (>= 100 iterations) through the whole
    defence with exact gradients (view ``adaptive``); a white-box attack in the
    ``adaptive_bpda``, ``smooth`` and ``nonadaptive`` views; Square (>= 5000 queries) on
    the defended model; transfer from the undefended base model (``source_name: base``)
    and from an independently trained one (``source_name: other_seed``)."""
    gaps = []
    for eps in grid:
        at = [r for r in runs if r.eps is not None and abs(r.eps - eps) < 1e-9]
        need = {
            "APGD-CE (>= 100 iterations) in view adaptive":
                any(_apgd(r, "apgd-ce") and _in_view(r, "adaptive") for r in at),
            "targeted APGD-DLR (apgd-t, >= 100 iterations) in view adaptive":
                any(_apgd(r, "apgd-t") and _in_view(r, "adaptive") for r in at),
            "square (>= 5000 queries)":
                any(r.name == "square" and int(r.params.get("queries", 5000))
                    >= MIN_SQUARE_QUERIES for r in at),
            "transfer from the base model (source_name: base)":
                any(r.name == "transfer" and r.params.get("source_name") == "base"
                    for r in at),
            "transfer from another seed (source_name: other_seed)":
                any(r.name == "transfer" and r.params.get("source_name") == "other_seed"
                    for r in at),
        }
        for view in ("adaptive_bpda", "smooth", "nonadaptive"):
            need[f"a white-box attack (pgd, autoattack) in view {view}"] = any(
                r.name in ("pgd", "autoattack") and _in_view(r, view) for r in at)
        gaps += [f"{round(eps * 255, 6):g}/255: {what}" for what, ok in need.items() if not ok]
    return gaps

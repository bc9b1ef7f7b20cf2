"""Attack views of a wrapped defence, and the sanity curves of notes/peers.md C.2 6.

A *view* decides what an attack differentiates (or queries) when the evaluated model has
an inner network (``model.network``, e.g. :class:`pipeline.sad.model.SADModel`); the
prediction that is scored is always the whole defended model's:

- ``adaptive``: the whole defence, exact gradients (double backprop through S1).
- ``adaptive_bpda``: the whole defence, the saliency term constant in the backward pass.
- ``nonadaptive``: only the inner (recalibrated) network; the defence is then applied
  to the adversarial examples (the paper's protocol).

Black-box attacks (square) query the viewed model; transfer attacks ignore it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from pipeline.core.modes import eval_mode
from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.robust import evaluate_robust

VIEWS = ("adaptive", "adaptive_bpda", "nonadaptive")


def available_views(model: nn.Module) -> list[str]:
    """The views that apply to ``model``: all three for a SAD-like wrapper, else none.

    ``adaptive`` (exact) is left out when the wrapper cannot give exact gradients (a
    saliency method other than ``grad``); BPDA then is the adaptive attack.
    """
    if getattr(model, "network", None) is None:
        return []
    views = []
    spec = getattr(model, "spec", None)
    if hasattr(model, "with_grad_mode"):
        if spec is None or spec.saliency == "grad" or not spec.active:
            views.append("adaptive")
        views.append("adaptive_bpda")
    else:
        views.append("adaptive")
    return views + ["nonadaptive"]


def view_model(model: nn.Module, view: str | None) -> nn.Module:
    """The module an attack sees under ``view`` (``None``/empty: ``model`` itself)."""
    if not view:
        return model
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
    inner = getattr(model, "network", None)
    if inner is None:
        raise ValueError(f"view {view!r} needs a wrapped model with an inner .network; "
                         f"{type(model).__name__} has none")
    if view == "nonadaptive":
        return inner
    if not hasattr(model, "with_grad_mode"):
        if view == "adaptive":
            return model
        raise ValueError(f"{type(model).__name__} has no gradient modes (view {view!r})")
    return model.with_grad_mode("exact" if view == "adaptive" else "bpda")


class RobustRecord:
    """Per budget and dataset index: robust against every attack recorded so far."""

    def __init__(self):
        self.robust: dict[float, dict[int, bool]] = {}

    def add(self, eps: float, index: torch.Tensor, ok: torch.Tensor) -> None:
        seen = self.robust.setdefault(float(eps), {})
        for i, o in zip(index.tolist(), ok.tolist()):
            seen[i] = seen.get(i, True) and bool(o)


class ViewAttack:
    """An attack that crafts against ``view_model(model, view)``; everything else delegates.

    The evaluation scores ``model(x_adv)`` with the whole defence, so in the
    ``nonadaptive`` view the defence is applied after the attack. With a ``record``,
    each example's outcome under the whole model is kept per ``eps`` (for the worst case
    over views; metric-producing attacks are left out, as in the protocol).
    """

    def __init__(self, attack: Any, view: str, record: RobustRecord | None = None,
                 eps: float | None = None):
        self.attack, self.view, self.record, self.eps = attack, view, record, eps

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw):
        x_adv = self.attack(view_model(model, self.view), x, y, **kw)
        index = kw.get("index")
        if (self.record is not None and self.eps is not None and index is not None
                and not hasattr(self.attack, "example_metrics")):
            with torch.no_grad():
                self.record.add(self.eps, index.cpu(), (model(x_adv).argmax(1) == y).cpu())
        return x_adv

    def __getattr__(self, name: str):
        if name in ("attack", "view", "record", "eps"):  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.attack, name)


@dataclass(frozen=True)
class ViewRun(AttackRun):
    """An :class:`AttackRun` whose attack is built as a :class:`ViewAttack`."""

    view: str = "adaptive"
    record: RobustRecord | None = field(default=None, compare=False, repr=False)

    def build(self, extra: dict | None = None):
        return ViewAttack(super().build(extra), self.view, self.record, self.eps)


def with_view(runs: Sequence[AttackRun], view: str,
              record: RobustRecord | None = None) -> list[ViewRun]:
    """``runs`` with every attack crafted under ``view`` (outcomes kept in ``record``)."""
    names = [f.name for f in fields(AttackRun)]
    return [ViewRun(**{k: getattr(r, k) for k in names}, view=view, record=record)
            for r in runs]


def _loss(row: dict) -> str:
    try:
        return str(json.loads(row.get("attack_params") or "{}").get("loss", "ce"))
    except (TypeError, ValueError):
        return "ce"


def sanity_curve_flags(rows: Sequence[dict], *, zero_tol: float = 0.05,
                       min_eps: float = 16 / 255) -> list[str]:
    """Violations of the PGD sanity curves among ``rows`` (one view's rows).

    - At fixed steps and loss, accuracy must not rise with eps, and at the largest eps
      (when it is at least ``min_eps``) must be at most ``zero_tol``.
    - At fixed eps, loss and restarts, accuracy must not rise with more steps.
    A rise smaller than one example (1/n) is not a violation.

    Returns:
        human-readable flags (empty: the curves are sane).
    """
    pgd = [r for r in rows if r.get("attack_name") == "pgd" and r.get("metric") == "accuracy"
           and not math.isnan(r.get("eps", math.nan))]
    flags: list[str] = []
    by_steps: dict[tuple, list[dict]] = defaultdict(list)
    by_eps: dict[tuple, list[dict]] = defaultdict(list)
    for r in pgd:
        by_steps[(r["steps"], _loss(r), r["restarts"])].append(r)
        by_eps[(round(r["eps"] * 255, 6), _loss(r), r["restarts"])].append(r)
    for (steps, loss, _), group in sorted(by_steps.items()):
        group = sorted(group, key=lambda r: r["eps"])
        for a, b in pairwise(group):
            if b["accuracy"] > a["accuracy"] + 1.0 / max(b["n"], 1):
                flags.append(f"sanity: pgd-{steps:g} ({loss}) accuracy rises with eps: "
                             f"{a['accuracy']:.3f} at {a['eps'] * 255:.1f}/255 -> "
                             f"{b['accuracy']:.3f} at {b['eps'] * 255:.1f}/255")
        last = group[-1]
        if last["eps"] >= min_eps - 1e-9 and last["accuracy"] > zero_tol:
            flags.append(f"sanity: pgd-{steps:g} ({loss}) accuracy {last['accuracy']:.3f} at "
                         f"{last['eps'] * 255:.1f}/255 does not approach 0 (> {zero_tol}); "
                         "gradient masking or an attack that does not see the defence")
    for (eps, loss, _), group in sorted(by_eps.items()):
        group = sorted(group, key=lambda r: r["steps"])
        for a, b in pairwise(group):
            if b["steps"] > a["steps"] and b["accuracy"] > a["accuracy"] + 1.0 / max(b["n"], 1):
                flags.append(f"sanity: at {eps:g}/255 ({loss}) more steps raise accuracy: "
                             f"{a['accuracy']:.3f} with {a['steps']:g} -> "
                             f"{b['accuracy']:.3f} with {b['steps']:g}")
    return flags


def evaluate_views(model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                   runs: Sequence[AttackRun], views: Sequence[str] | None = None,
                   **kw) -> list[dict]:
    """:func:`pipeline.evaluate.robust.evaluate_robust` once per view, rows tagged ``view``.

    Args:
        model: the defended model (scored whole); plain models get one pass, view "".
        views: subset of :data:`VIEWS` (default: :func:`available_views`).
        kw: passed to ``evaluate_robust`` (batch_size, seed, device, extra_params).

    Returns:
        rows as ``evaluate_robust``'s plus ``view``; each view's clean row carries that
        view's sanity-curve flags (:func:`sanity_curve_flags`). With several views, one
        ``worst_case`` row per budget with view ``all``: per example, robust only when
        clean-correct and robust against every attack of that budget in every view
        (notes/peers.md C.2 5: report the minimum over all attacks).
    """
    views = list(views) if views is not None else available_views(model)
    record = RobustRecord()
    out: list[dict] = []
    for view in views or [""]:
        view_runs = with_view(runs, view, record) if view else list(runs)
        rows = evaluate_robust(model, x, y, index, view_runs, **kw)
        rows[0]["flags"] = list(rows[0]["flags"]) + sanity_curve_flags(rows)
        out += [{**r, "view": view} for r in rows]
    if len(views) > 1:
        out += _worst_over_views(model, x, y, index, record, out[0], kw)
        extra = view_flags(out)
        for r in out:
            if r["attack"] == "clean" and r["view"] != "nonadaptive":
                r["flags"] = list(r["flags"]) + extra
    return out


def view_flags(rows: Sequence[dict]) -> list[str]:
    """Flags where an adaptive view does worse than the non-adaptive one.

    The adaptive attacks see the whole defence, so they should reach at most the
    accuracy of the same attack run on the inner network alone (white-box must beat a
    surrogate: Athalye et al.'s sanity tests). When they do not, their gradients are
    masked by the defence and only the worst case over views (``all``) is trustworthy.
    A gap below one example (1/n) is not flagged.
    """
    acc = {(r["view"], r["attack"], r["eps"]): r for r in rows
           if r.get("metric") == "accuracy" and r["attack"] not in ("clean", "worst_case")}
    flags = []
    for (view, label, eps), r in sorted(acc.items(), key=lambda kv: str(kv[0])):
        other = acc.get(("nonadaptive", label, eps))
        if view.startswith("adaptive") and other is not None and (
                r["accuracy"] > other["accuracy"] + 1.0 / max(r["n"], 1)):
            flags.append(f"sanity: {label} at {eps * 255:.1f}/255 is weaker in view {view} "
                         f"({r['accuracy']:.3f}) than nonadaptive ({other['accuracy']:.3f}): "
                         "gradient masking by the defence; use the worst case (view all)")
    return flags


def _worst_over_views(model, x, y, index, record: RobustRecord, template: dict,
                      kw: dict) -> list[dict]:
    device, bs = kw.get("device", "cpu"), int(kw.get("batch_size", 256))
    with eval_mode(model), torch.no_grad():
        pred = torch.cat([model(x[i:i + bs].to(device)).argmax(1).cpu()
                          for i in range(0, len(x), bs)])
    clean = (pred == y).tolist()
    rows = []
    for eps, seen in sorted(record.robust.items()):
        ok = [c and seen.get(int(i), True) for c, i in zip(clean, index.tolist())]
        acc = sum(ok) / max(len(ok), 1)
        rows.append({**template, "attack": "worst_case", "attack_name": "worst_case",
                     "attack_params": "{}", "eps": eps, "steps": math.nan,
                     "restarts": math.nan, "metric": "accuracy", "value": acc,
                     "accuracy": acc, "seconds": 0.0, "flags": [], "view": "all"})
    return rows

"""Attack views of a wrapped defence, and the sanity flags of notes/peers.md C.2 6.

A *view* decides what an attack differentiates when the evaluated model has an inner
network and an input transformation (``model.network`` and ``model.purify``, e.g.
:class:`pipeline.sad.model.SADModel`). In every view the module handed to the attack
returns exactly the whole defence's logits in its forward pass, so every attack chooses
its iterates, stops early and queries (FGSM, PGD's best iterate, TRADES-KL, Square,
AutoAttack's early stop) by the model that is evaluated; views differ only in the
backward pass:

- ``adaptive``: exact gradients of the whole defence (double backprop through S1).
- ``adaptive_bpda``: BPDA (Athalye et al. 2018): the whole input transformation, the
  saliency step and the clip, is the identity on the backward pass, so the gradient is
  the inner network's at the transformed input, on every pixel (clipped ones included).
- ``smooth``: the saliency term is computed through a smooth copy of the network
  (every ``nn.ReLU`` replaced by ``Softplus(beta)``), so its gradient is not zero almost
  everywhere as it is on a ReLU network (where ``adaptive`` sees only the first-order
  path); the forward value is still the defence's.
- ``nonadaptive``: the gradient of the inner network at the untransformed input (the
  paper's protocol: the attack ignores the defence), the iterate chosen by the defence.

Views other than ``adaptive`` are straight-through modules: forward the defence's value,
backward the view's surrogate (:func:`straight_through`).
"""

from __future__ import annotations

import copy
import json
import math
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from pipeline.core.grad import straight_through
from pipeline.core.modes import eval_mode
from pipeline.core.outcomes import encode_outcome
from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.robust import evaluate_robust
from pipeline.sad.model import predicted_class_gradient
from pipeline.saliency.transforms import normalise

VIEWS = ("adaptive", "adaptive_bpda", "smooth", "nonadaptive")
SMOOTH_BETA = 10.0  # Softplus(beta): within log(2)/beta of ReLU, smooth everywhere


_SMOOTH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def smooth_copy(network: nn.Module, beta: float = SMOOTH_BETA) -> nn.Module:
    """A copy of ``network`` with every ``nn.ReLU`` replaced by ``nn.Softplus(beta)``
    (the weights and BN statistics copied; eval mode). Cached per network and beta, so
    the attack's per-batch views share one copy; the network must not change after."""
    cached = _SMOOTH.get(network)
    if cached is not None and cached[0] == beta:
        return cached[1]
    net = copy.deepcopy(network).eval()
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.Softplus(beta=beta))
    _SMOOTH[network] = (beta, net)
    return net


class _View(nn.Module):
    """A view of a wrapped defence: ``.network`` and ``.purify`` as the defence's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def network(self) -> nn.Module:
        return self.model.network

    @property
    def spec(self):
        return getattr(self.model, "spec", None)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.purify(x)

    def defended(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed input, detached (the forward value of every view)."""
        with torch.enable_grad():
            return self.model.purify(x.detach()).detach()


class BPDAView(_View):
    """``network(T(x))`` forward, the transformation ``T`` the identity backward."""

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return straight_through(self.defended(x), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.purify(x))


class SmoothView(_View):
    """The defence's value; the backward pass through ``network(clip(x + r *
    normalise(S_smooth(x))))`` with S_smooth the predicted-class gradient of
    :func:`smooth_copy` (double backprop)."""

    def __init__(self, model: nn.Module, beta: float = SMOOTH_BETA):
        super().__init__(model)
        self.smooth = smooth_copy(model.network, beta)

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        """``T(x)`` in the forward pass, the smooth surrogate's gradient backward."""
        spec = self.model.spec
        value = self.defended(x)
        if not x.requires_grad or not spec.active:
            return value
        sal = predicted_class_gradient(self.smooth, x, create_graph=True)
        surrogate = (x + float(spec.ratio) * normalise(sal, spec.normalise)).clamp(0, 1)
        return straight_through(value, surrogate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.purify(x))


class InnerView(_View):
    """The defence's logits forward; the inner network's gradient at ``x`` backward.

    ``purify`` is the identity: an attack on the interpretation (CAM of
    ``network(purify(x))``) works on the inner network at ``x``, as the paper's
    non-adaptive protocol."""

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            value = self.model(x.detach())
        if not x.requires_grad:
            return value
        return straight_through(value, self.network(x))


def available_views(model: nn.Module) -> list[str]:
    """The views that apply to ``model``: every view for a SAD-like wrapper, else none.

    ``adaptive`` (exact) and ``smooth`` need a saliency that is a differentiable
    function of x (``grad``); with another saliency method BPDA is the adaptive attack.
    """
    if getattr(model, "network", None) is None:
        return []
    spec = getattr(model, "spec", None)
    if not hasattr(model, "purify"):
        return ["adaptive", "nonadaptive"]
    exact = spec is None or spec.saliency == "grad" or not spec.active
    smooth = spec is not None and spec.active and spec.saliency == "grad"
    return (["adaptive"] if exact else []) + ["adaptive_bpda"] + \
        (["smooth"] if smooth else []) + ["nonadaptive"]


def view_model(model: nn.Module, view: str | None) -> nn.Module:
    """The module an attack sees under ``view`` (``None``/empty: ``model`` itself); its
    forward pass is the whole defence's in every view."""
    if not view:
        return model
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")
    if getattr(model, "network", None) is None:
        raise ValueError(f"view {view!r} needs a wrapped model with an inner .network; "
                         f"{type(model).__name__} has none")
    if view == "nonadaptive":
        return InnerView(model)
    if view == "adaptive":
        return model.with_grad_mode("exact") if hasattr(model, "with_grad_mode") else model
    if not hasattr(model, "purify"):
        raise ValueError(f"{type(model).__name__} has no input transformation (view {view!r})")
    if view == "adaptive_bpda":
        return BPDAView(model)
    return SmoothView(model)


class RobustRecord:
    """Per budget and dataset index: robust against every attack recorded so far."""

    def __init__(self):
        self.robust: dict[float, dict[int, bool]] = {}

    def mask(self, eps: float, index: torch.Tensor) -> torch.Tensor:
        """bool [N]: not yet broken at ``eps`` by any recorded attack (unseen: True)."""
        seen = self.robust.get(float(eps), {})
        return torch.tensor([seen.get(i, True) for i in index.tolist()], dtype=torch.bool)

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

    def narrow(self, todo: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.record is None or self.eps is None:
            return todo
        return todo & self.record.mask(self.eps, index)


def with_view(runs: Sequence[AttackRun], view: str,
              record: RobustRecord | None = None) -> list[ViewRun]:
    """``runs`` with every attack crafted under ``view`` (outcomes kept in ``record``)."""
    names = [f.name for f in fields(AttackRun)]
    return [ViewRun(**{k: getattr(r, k) for k in names}, view=view, record=record)
            for r in runs]


def _param_of(row: dict, name: str, default: Any) -> Any:
    try:
        return json.loads(row.get("attack_params") or "{}").get(name, default)
    except (TypeError, ValueError, AttributeError):
        return default


def _loss(row: dict) -> str:
    return str(_param_of(row, "loss", "ce"))


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
        kw: passed to ``evaluate_robust`` (batch_size, seed, device, extra_params);
            ``journal``: a :class:`~pipeline.evaluate.journal.Journal`, one section per
            pass (finished runs are kept in it, and restored from it on a rerun).

    Returns:
        rows as ``evaluate_robust``'s plus ``view``; each view's clean row carries that
        view's sanity-curve flags (:func:`sanity_curve_flags`), and every attack row the
        flags of :func:`cell_flags` that concern it. A run is crafted in the views its
        ``views`` names (``each``: all); runs for ``whole`` (black-box and transfer
        attacks) run once, on the whole defence, as view ``whole``. With several views, one ``worst_case`` row per budget with view
        ``all``: per example, robust only when clean-correct and robust against every
        attack of that budget in every view (notes/peers.md C.2 5: report the minimum
        over all attacks).
    """
    views = list(views) if views is not None else available_views(model)
    record = RobustRecord()
    out: list[dict] = []
    if views:
        passes = [(v, with_view([r for r in runs if "each" in r.views or v in r.views],
                                v, record)) for v in views]
        whole = [r for r in runs if "whole" in r.views]
        if whole:
            passes.append(("whole", with_view(whole, "", record)))
    else:
        passes = [("", list(runs))]
    journal = kw.pop("journal", None)
    for view, view_runs in passes:
        section = journal.section(view) if journal is not None else None
        rows = evaluate_robust(model, x, y, index, view_runs, journal=section, **kw)
        rows[0]["flags"] = list(rows[0]["flags"]) + sanity_curve_flags(rows)
        out += [{**r, "view": view} for r in rows]
    if len(passes) > 1:
        out += _worst_over_views(model, x, y, index, record, out[0], kw)
        extra = view_flags(out)
        for r in out:
            if r["attack"] == "clean" and r["view"] != "nonadaptive":
                r["flags"] = list(r["flags"]) + extra
    cell_flags(out)
    return out


SINGLE_STEP = ("fgsm",)
WHITE_BOX = ("pgd", "autoattack", "eot_pgd", "fgsm")
BLACK_BOX = ("square", "transfer")
LARGE_EPS = 32 / 255


def cell_flags(rows: list[dict], *, zero_tol: float = 0.05, margin: float = 0.02) -> None:
    """Athalye et al.'s and Carlini et al.'s sanity checks, each flag added to the row
    it concerns (in place). Gaps below one example (1/n) are never flagged.

    - a single-step attack (FGSM) beats an iterative one at the same budget and view:
      the iterative attack's row is flagged;
    - a black-box or transfer attack beats a white-box one at the same budget: the
      white-box row is flagged (its gradients are masked or the attack is weak);
    - an attack at a large budget (>= 32/255) leaves more than ``zero_tol`` accuracy;
    - a defence's adaptive view scores more than ``margin`` above the worst case over
      all attacks and views (view ``all``) at its budget.
    """
    # a survivors run's accuracy is a running worst case, not its attack's own: it is
    # compared with nothing
    acc = [r for r in rows if r.get("metric") == "accuracy"
           and r["attack"] not in ("clean", "worst_case") and not math.isnan(r["eps"])
           and not _param_of(r, "survivors", False)]
    key = lambda r: round(r["eps"] * 255, 6)  # noqa: E731
    worst = {key(r): r["accuracy"] for r in rows
             if r.get("attack") == "worst_case" and r.get("view") == "all"}
    for r in acc:
        one = 1.0 / max(r["n"], 1)
        name, eps = r["attack_name"], key(r)
        same = [o for o in acc if key(o) == eps and o is not r]
        if name in WHITE_BOX and name not in SINGLE_STEP:
            for o in same:
                if o["attack_name"] in SINGLE_STEP and o["view"] == r["view"] and \
                        o["accuracy"] < r["accuracy"] - one:
                    _flag(r, f"sanity: single-step {o['attack']} ({o['accuracy']:.3f}) beats "
                             f"{r['attack']} ({r['accuracy']:.3f}) at {eps:g}/255: the "
                             "iterative attack is weak here (masked gradients?)")
        if name in WHITE_BOX:
            for o in same:
                if o["attack_name"] in BLACK_BOX and o["accuracy"] < r["accuracy"] - one:
                    _flag(r, f"sanity: black-box {o['attack']} ({o['accuracy']:.3f}) beats "
                             f"white-box {r['attack']} ({r['accuracy']:.3f}) at {eps:g}/255: "
                             "the white-box attack does not see the defence")
        if name in WHITE_BOX + BLACK_BOX and r["eps"] >= LARGE_EPS - 1e-9 and \
                r["accuracy"] > zero_tol:
            _flag(r, f"sanity: {r['attack']} leaves {r['accuracy']:.3f} accuracy at "
                     f"{eps:g}/255 (expected near 0): an attack that does not work here")
        view = str(r.get("view") or "")
        if (view.startswith("adaptive") or view == "smooth") and eps in worst and \
                r["accuracy"] > worst[eps] + max(margin, one):
            _flag(r, f"sanity: view {view} scores {r['accuracy']:.3f} with {r['attack']} at "
                     f"{eps:g}/255, more than {margin * 100:g} points above the worst case "
                     f"over all attacks ({worst[eps]:.3f}): lead with the worst case")


def _flag(row: dict, message: str) -> None:
    if message not in row["flags"]:
        row["flags"] = list(row["flags"]) + [message]


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
                     "accuracy": acc, "seconds": 0.0, "flags": [], "view": "all",
                     "outcome": encode_outcome(torch.tensor(ok, dtype=torch.bool))})
    return rows

"""The robust-evaluation protocol (AutoAttack's, ``autoattack/autoattack.py``, ``checks.py``).

1. Sanity checks: logits not probabilities, deterministic forward, non-zero input
   gradients, no optimisation at inference time. A failed check is a flag, never hidden.
2. Clean accuracy.
3. Each attack run only on points still classified correctly (clean); one row each.
4. Per-example worst case over the attacks of each budget: a row of its own.
5. Final checks per attack: perturbation inside the budget, in [0, 1], no NaN.

Random draws come from per-example streams keyed by the dataset index, so the numbers
do not depend on the batch size. Each attack run (label, budget and view) draws from
streams of its own (:func:`run_seed`), so two attacks or two views never share a random
start; restarts within a run draw on from the same streams, so they differ too.
AutoAttack and Square draw per batch inside their library (``per_batch_rng``); they are
run on fixed blocks of dataset indices instead.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from pipeline.attacks.base import collect_flags, raise_flag
from pipeline.attacks.square import import_autoattack, reset_dynamic_check
from pipeline.core.modes import eval_mode
from pipeline.core.outcomes import encode_outcome
from pipeline.core.seeds import derive_seed
from pipeline.evaluate.journal import JournalSection
from pipeline.evaluate.presets import AttackRun

log = logging.getLogger(__name__)
BUDGET_TOL = 1e-5
CANONICAL_BLOCK = 128  # batch of dataset indices for attacks whose library draws per batch


class _FlagLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            raise_flag(f"sanity: {record.getMessage()}")


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """AutoAttack's checks on a batch; returns the flags raised (empty = all passed).

    Uses the official ``checks`` functions (randomness, probability outputs, zero
    gradients, dynamic defence = optimisation at inference time) and adds its own
    determinism check so the flag is raised even without AutoAttack.
    """

    aa = import_autoattack()
    checks = aa.checks
    reset_dynamic_check(aa)
    handler, logger = _FlagLog(), logging.getLogger("salpipe.sanity")
    logger.addHandler(handler)
    logger.propagate = False
    with collect_flags() as flags:
        try:
            checks.check_randomized(model, x, y, bs=x.shape[0], logger=logger)
            checks.check_range_output(model, x, logger=logger)
            checks.check_dynamic(model, x, False, logger=logger)
            xg = x.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = nn.functional.cross_entropy(model(xg), y)
                (grad,) = torch.autograd.grad(loss, xg)
            checks.check_zero_gradients(grad, logger=logger)
            with torch.no_grad():
                a, b = model(x), model(x)
            if not torch.equal(a, b):
                raise_flag("sanity: forward pass is not deterministic (randomised defence? "
                           "use eot_pgd / autoattack version rand)")
            if not torch.isfinite(a).all():
                raise_flag("sanity: non-finite logits")
        finally:
            logger.removeHandler(handler)
    return list(flags)


def _predict(model, x, batch_size, device) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            out.append(model(x[i:i + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def run_seed(seed: int, run: AttackRun) -> int:
    """The seed of one attack run's random streams: the evaluation's ``seed`` keyed by the
    run's label, budget and view (stable across processes; crc32, not ``hash``)."""
    eps = "none" if run.eps is None else f"{float(run.eps):.10g}"
    view = str(getattr(run, "view", "") or "")
    return derive_seed(seed, zlib.crc32(run.label.encode()),
                       zlib.crc32(f"{eps}|{view}".encode()))


def _param(attack: Any, name: str) -> float:
    v = getattr(attack, name, None)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def run_attack(model, attack, x, y, index, todo, *, batch_size, seed, device, eps):
    """Attack the examples ``todo`` (bool [N]); returns (robust bool [N], metrics, flags)."""
    robust = torch.zeros(x.shape[0], dtype=torch.bool)
    metrics: dict[str, torch.Tensor] = {}
    ids = todo.nonzero().squeeze(1)
    if getattr(attack, "per_batch_rng", False):
        # The library draws per batch: fixed blocks of dataset indices make the batches
        # (hence the numbers) independent of batch_size.
        block = index[ids] // CANONICAL_BLOCK
        batches = [ids[block == b] for b in block.unique()]
    else:
        batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    with collect_flags() as flags:
        for sel in batches:
            xb, yb = x[sel].to(device), y[sel].to(device)
            x_adv = attack(model, xb, yb, index=index[sel].to(device), seed=seed)
            if not torch.isfinite(x_adv).all():
                raise_flag("check: NaN/inf in adversarial examples")
            if x_adv.min() < 0 or x_adv.max() > 1:
                raise_flag("check: adversarial examples outside [0, 1]")
            if eps is not None and (x_adv - xb).abs().max().item() > eps + BUDGET_TOL:
                raise_flag(f"check: perturbation {(x_adv - xb).abs().max().item():.5f} "
                           f"exceeds eps {eps:.5f}")
            with torch.no_grad():
                robust[sel] = (model(x_adv).argmax(1) == yb).cpu()
            if hasattr(attack, "example_metrics"):
                for k, v in attack.example_metrics(model, xb, x_adv, yb).items():
                    metrics.setdefault(k, torch.full((x.shape[0],), math.nan, dtype=torch.float64))
                    metrics[k][sel] = v.double().cpu()
    return robust, {k: v[todo] for k, v in metrics.items()}, list(flags)


def evaluate_robust(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    runs: list[AttackRun],
    *,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    extra_params: dict[str, dict] | None = None,
    journal: JournalSection | None = None,
) -> list[dict]:
    """Run the protocol; one dict per result row.

    Args:
        model: the classifier (its own normalisation; logits out), on ``device``.
        x, y, index: images in [0, 1] ``[N,C,H,W]`` (CPU), labels ``[N]``, dataset
            indices ``[N]`` (keys of the per-example random streams).
        runs: the preset's attack runs.
        batch_size: attack batch size (results do not depend on it).
        seed: base seed of every random draw.
        extra_params: per attack name, parameters merged in (e.g. transfer ``source``).
        journal: where each finished attack run is kept, and from where a finished run
            of an earlier, killed evaluation is restored instead of run again
            (:mod:`pipeline.evaluate.journal`); None: nothing is kept.

    Returns:
        Rows with ``attack``, ``attack_name``, ``attack_params``, ``eps``, ``steps``,
        ``restarts``, ``n``, ``metric``, ``value``, ``accuracy``, ``seconds``, ``flags``.
    """
    with eval_mode(model):
        return _protocol(model, x, y, index, runs, batch_size, seed, device, extra_params,
                         journal)


def _protocol(model, x, y, index, runs, batch_size, seed, device, extra_params,
              journal) -> list[dict]:
    n = x.shape[0]
    t0 = time.perf_counter()
    k = min(n, batch_size)
    flags = sanity_checks(model, x[:k].to(device), y[:k].to(device))
    correct = _predict(model, x, batch_size, device) == y
    rows = [_row("clean", "clean", "{}", 0.0, None, n, "accuracy",
                 correct.float().mean().item(), time.perf_counter() - t0, flags, correct)]
    worst: dict[float, torch.Tensor] = {}
    worst_of: dict[float, list[str]] = {}
    random = any("not deterministic" in f or "randomized" in f.lower() for f in flags)
    skipped = [r.label for r in runs if r.when == "random" and not random]
    if skipped:
        rows[0]["flags"].append(f"skipped {', '.join(dict.fromkeys(skipped))}: the forward "
                                "pass is deterministic (EOT is for random defences)")
    todo_runs = [r for r in runs if r.label not in skipped]
    for position, run in enumerate(tqdm(todo_runs, desc="attacks", leave=False)):
        done = journal.restore(position, run, worst, worst_of, n) if journal is not None \
            else None
        if done is not None:
            rows += done
            continue
        first = len(rows)
        t0 = time.perf_counter()
        attack = run.build((extra_params or {}).get(run.name))
        survivors = run.survivors and run.eps is not None
        base = worst.get(run.eps, correct)
        todo = run.narrow(base, index) if survivors else correct
        robust, metrics, aflags = run_attack(
            model, attack, x, y, index, todo, batch_size=batch_size,
            seed=run_seed(seed, run), device=device, eps=run.eps)
        if survivors:
            aflags.append(f"survivors: crafted on the {int(todo.sum())} of "
                          f"{int(correct.sum())} clean-correct examples every earlier "
                          "attack at this budget left robust (AutoAttack's protocol); "
                          "the accuracy is the worst case so far")
        if model.training:
            aflags.append("check: the attack left the model in train mode")
            model.eval()
        secs = time.perf_counter() - t0
        acc = robust.float().mean().item()
        log.info("%s eps=%s: accuracy %.4f (%.1f s)", run.label, run.eps, acc, secs)
        rows.append(_row(run.label, run.name, run.params_json(), run.eps, attack, n,
                         "accuracy", acc, secs, aflags, robust))
        for name, vals in metrics.items():
            finite = torch.isfinite(vals)
            mean = vals[finite].mean().item() if finite.any() else math.nan
            excluded = 1 - finite.double().mean().item() if len(vals) else math.nan
            rows.append(_row(run.label, run.name, run.params_json(), run.eps, attack, n,
                             name, mean, secs, aflags))
            rows.append(_row(run.label, run.name, run.params_json(), run.eps, attack, n,
                             f"{name}_excluded", excluded, secs, aflags))
        if run.eps is not None and not hasattr(attack, "example_metrics"):
            # a survivors run skipped what other views broke: unattacked here, those
            # stay as they were in this pass (the worst case over views counts them)
            worst[run.eps] = base & (robust | ~todo) if survivors else base & robust
            worst_of.setdefault(run.eps, []).append(run.label)
        if journal is not None:
            journal.keep(position, run, rows[first:], worst, worst_of)
    for eps, rob in sorted(worst.items()):
        # attack_params names the attacks combined: the set differs between budgets
        rows.append(_row("worst_case", "worst_case", json.dumps({"of": worst_of[eps]}), eps,
                         None, n, "accuracy", rob.float().mean().item(), 0.0, [], rob))
    return rows


def _row(label, name, params, eps, attack, n, metric, value, seconds, flags,
         outcome: torch.Tensor | None = None) -> dict:
    """One result row; ``outcome``: which examples count as correct (accuracy rows)."""
    return {
        "attack": label, "attack_name": name, "attack_params": params,
        "eps": math.nan if eps is None else float(eps),
        "steps": _param(attack, "steps"), "restarts": _param(attack, "restarts"),
        "n": int(n), "metric": metric, "value": float(value),
        "accuracy": float(value) if metric == "accuracy" else math.nan,
        "seconds": float(seconds), "flags": list(flags),
        "outcome": "" if outcome is None else encode_outcome(outcome),
    }

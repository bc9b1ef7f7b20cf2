"""The papers' claims (pipeline/resources/claims.yaml) and a verdict for each from a
sweep's results: holds / does not hold / inconclusive.

The seed is the unit of replication. For each part of a claim, the per-seed difference
``a - b`` of the two rows (the same training seed paired) gives a mean, a paired t-test
(two-sided, ``n - 1`` degrees of freedom) and its 95 % interval; the part's direction
reads the interval (``greater``: holds when it lies above 0, does not hold when it lies
at or below 0; ``not_less``: holds above ``-margin``, does not hold below it; ``less``
and ``not_greater`` mirror them). The per-image paired test (exact McNemar over the
test images, from the results' per-example outcomes) is shown per seed, labelled as
within-seed only: it says nothing about another training seed.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from pipeline.core.budget import format_budget, parse_budget
from pipeline.core.outcomes import decode_outcome
from pipeline.report.tables import student_of

CLAIMS_FILE = resources.files("pipeline") / "resources" / "claims.yaml"
DIRECTIONS = ("greater", "less", "not_less", "not_greater")
VERDICTS = ("holds", "does not hold", "inconclusive")
# the part's "attack" that reads training cost (seconds per epoch) instead of a result
TRAINING = "training"
_CLAIM_KEYS = {"id", "paper", "table", "sweep", "dataset", "statement", "a", "b", "parts",
               "published_rows", "published_arch", "published_dataset", "preset"}
_REQUIRED = _CLAIM_KEYS - {"published_rows", "published_arch", "published_dataset", "preset"}
_PART_KEYS = {"attack", "eps", "metric", "direction", "margin", "published",
              "published_attack"}


@dataclass(frozen=True)
class Part:
    """One comparison of a claim: ``a`` against ``b`` on one result (or on cost)."""

    attack: str
    eps: float
    metric: str
    direction: str
    margin: float
    published: tuple[float | None, float | None]
    published_attack: str

    def label(self) -> str:
        if self.attack == TRAINING:
            return f"training {self.metric}"
        if self.attack == "clean":
            return "clean"
        what = self.attack if self.metric == "accuracy" else f"{self.attack} {self.metric}"
        return f"{what} {format_budget(self.eps)}"


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    table: str
    sweep: str
    dataset: str
    statement: str
    a: str
    b: str
    parts: tuple[Part, ...]
    published_rows: tuple[str, ...] = ()
    published_arch: str = ""
    published_dataset: str = ""  # where the paper's numbers are of another data set
    preset: str = ""  # read only the rows of this evaluation preset ("": any)


def _unknown(keys, allowed, where: str) -> None:
    for k in sorted(set(keys) - allowed):
        near = difflib.get_close_matches(k, allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"{where}: unknown key {k!r}{hint}; allowed: "
                         f"{', '.join(sorted(allowed))}")


def _part(d: dict, where: str) -> Part:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a part is a mapping, not {d!r}")
    _unknown(d, _PART_KEYS, where)
    if "attack" not in d or "direction" not in d:
        raise ValueError(f"{where}: a part needs attack and direction")
    if d["direction"] not in DIRECTIONS:
        raise ValueError(f"{where}.direction: {d['direction']!r} is not one of "
                         f"{', '.join(DIRECTIONS)}")
    attack = str(d["attack"])
    eps = 0.0 if attack in ("clean", TRAINING) else d.get("eps")
    if eps is None:
        raise ValueError(f"{where}: attack {attack!r} needs eps")
    pub = d.get("published") or [None, None]
    if not isinstance(pub, list) or len(pub) != 2:
        raise ValueError(f"{where}.published: expected [a, b], got {pub!r}")
    metric = str(d.get("metric", "epoch_seconds" if attack == TRAINING else "accuracy"))
    return Part(attack, float(parse_budget(eps)), metric, d["direction"],
                float(d.get("margin", 1.0)),
                tuple(None if v is None else float(v) for v in pub),
                str(d.get("published_attack") or attack))


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default: the package's claims.yaml), validated."""
    where = str(path or "claims.yaml")
    text = Path(path).read_text() if path else CLAIMS_FILE.read_text()
    data = yaml.safe_load(text) or {}
    out, seen = [], set()
    for i, c in enumerate(data.get("claims") or []):
        at = f"{where}: claims[{i}]"
        if not isinstance(c, dict):
            raise ValueError(f"{at}: a claim is a mapping")
        _unknown(c, _CLAIM_KEYS, at)
        missing = sorted(_REQUIRED - set(c))
        if missing:
            raise ValueError(f"{at} ({c.get('id', '?')}): missing {', '.join(missing)}")
        if c["id"] in seen:
            raise ValueError(f"{at}: claim id {c['id']!r} appears twice")
        seen.add(c["id"])
        parts = tuple(_part(p, f"{at}.parts[{j}]") for j, p in enumerate(c["parts"] or []))
        if not parts:
            raise ValueError(f"{at} ({c['id']}): no parts")
        out.append(Claim(str(c["id"]), str(c["paper"]), str(c["table"]), str(c["sweep"]),
                         str(c["dataset"]), str(c["statement"]), str(c["a"]), str(c["b"]),
                         parts, tuple(c.get("published_rows") or ()),
                         str(c.get("published_arch") or ""),
                         str(c.get("published_dataset") or ""),
                         str(c.get("preset") or "")))
    return out


# -- statistics ------------------------------------------------------------------------
def paired_test(diffs: np.ndarray, direction: str, margin: float = 1.0) -> dict:
    """Mean, sd, 95 % t-interval and two-sided p of per-seed differences, and the
    part's verdict in ``direction`` (see the module doc)."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else math.nan, "sd": math.nan,
           "lo": math.nan, "hi": math.nan, "p": math.nan, "verdict": "inconclusive"}
    if n < 2:
        out["why"] = f"{n} seed(s): a verdict needs at least 2"
        return out
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    lo, hi = out["mean"] - half, out["mean"] + half
    if sd > 0:
        p = float(2 * stats.t.sf(abs(out["mean"]) / (sd / math.sqrt(n)), n - 1))
    else:
        p = 1.0 if out["mean"] == 0 else 0.0
    yes, no = {"greater": (lo > 0, hi <= 0), "less": (hi < 0, lo >= 0),
               "not_less": (lo > -margin, hi < -margin),
               "not_greater": (hi < margin, lo > margin)}[direction]
    out.update(sd=sd, lo=lo, hi=hi, p=p,
               verdict="holds" if yes else "does not hold" if no else "inconclusive")
    return out


def mcnemar(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """``(a right b wrong, a wrong b right, exact two-sided p)`` over paired images."""
    ab, ba = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if ab + ba == 0 else float(stats.binomtest(min(ab, ba), ab + ba, 0.5).pvalue)
    return ab, ba, p


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its parts'."""
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if "does not hold" in verdicts:
        return "does not hold"
    return "inconclusive"


# -- reading the results ---------------------------------------------------------------
def _rows(results: pd.DataFrame, dataset: str, model: str, part: Part,
          preset: str = "") -> pd.DataFrame:
    r = results
    sel = ((r["dataset"] == dataset) & (r["model"].map(student_of) == model)
           & (r["attack"] == part.attack) & (r["metric"] == part.metric)
           & (np.abs(r["eps"].astype(float).fillna(0.0) - part.eps) < 1e-9))
    if preset and "preset" in r:
        sel &= r["preset"] == preset
    g = r[sel]
    if "view" in g and len(g):
        # a defence: its worst case is the view "all" row; otherwise the adaptive view
        for view in ("", "all", "adaptive"):
            if (g["view"] == view).any():
                return g[g["view"] == view]
    return g


def _per_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per seed (the largest n, then the newest)."""
    sort = [c for c in ("n", "created") if c in rows]
    rows = rows.sort_values(sort, kind="stable") if sort else rows
    return rows.drop_duplicates("seed", keep="last").set_index("seed")


def run_identity(run: Path) -> tuple[str, str, int] | None:
    """``(dataset, model, seed)`` of a run directory in the sweep's layout,
    ``.../runs/<dataset>/<students|sad>/<model>/seed<k>``; None for another folder."""
    run = Path(run)
    if not re.fullmatch(r"seed\d+", run.name) or len(run.parents) < 3:
        return None
    return run.parents[2].name, run.parent.name, int(run.name[4:])


def training_cost(runs: list[Path]) -> pd.DataFrame:
    """``dataset, model, seed, epoch_seconds`` (mean over a run's epochs) of run
    directories ``.../runs/<dataset>/students/<model>/seed<k>`` (and ``sad/``)."""
    rows = []
    for run in map(Path, runs or []):
        metrics, identity = run / "metrics.jsonl", run_identity(run)
        if not metrics.is_file() or identity is None:
            continue
        secs = [json.loads(line).get("epoch_seconds") for line in
                metrics.read_text().splitlines() if line.strip()]
        secs = [s for s in secs if s is not None]
        if secs:
            dataset, model, seed = identity
            rows.append({"dataset": dataset, "model": model, "seed": seed,
                         "epoch_seconds": float(np.mean(secs))})
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "epoch_seconds"])


def row_values(results, cost, claim: Claim, part: Part, model: str):
    """``{seed: value}`` and ``{seed: (outcome bits or None)}`` of one row of a claim."""
    if part.attack == TRAINING:
        c = cost[(cost["dataset"] == claim.dataset) & (cost["model"] == model)]
        return dict(zip(c["seed"].astype(int), c[part.metric].astype(float))), {}
    g = _per_seed(_rows(results, claim.dataset, model, part, claim.preset))
    scale = 100.0 if part.metric == "accuracy" else 1.0
    values = {int(s): float(v) * scale for s, v in g["value"].items() if pd.notna(s)}
    bits = {}
    if part.metric == "accuracy" and "outcome" in g:
        for s, (text, n) in g[["outcome", "n"]].iterrows():
            try:
                bits[int(s)] = decode_outcome(text, int(n))
            except ValueError:
                pass
    return values, bits


def digits(metric: str) -> int:
    """Decimals a metric is shown with: accuracy and seconds in 0.1, a score in [-1, 1]
    (Kendall's tau) in 0.001."""
    return 1 if metric in ("accuracy", "epoch_seconds") else 3


def _fmt(x: float, metric: str = "accuracy") -> str:
    """``+1.2`` (signed, :func:`digits` decimals); "" for a missing number."""
    return "" if x is None or not np.isfinite(x) else f"{x:+.{digits(metric)}f}"


def judge(claims: list[Claim], results: pd.DataFrame,
          cost: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(verdicts, parts)``: one row per claim whose rows the results hold, and one row
    per part with the numbers behind it. Claims of data sets or rows the results do
    not hold are left out (another sweep tests them)."""
    cost = cost if cost is not None else pd.DataFrame(columns=["dataset", "model", "seed",
                                                               "epoch_seconds"])
    parts, verdicts = [], []
    present = set(zip(results["dataset"], results["model"].map(student_of)))
    for c in claims:
        if (c.dataset, c.a) not in present or (c.dataset, c.b) not in present:
            continue
        got = []
        for p in c.parts:
            va, ba = row_values(results, cost, c, p, c.a)
            vb, bb = row_values(results, cost, c, p, c.b)
            seeds = sorted(set(va) & set(vb))
            diffs = np.array([va[s] - vb[s] for s in seeds])
            t = paired_test(diffs, p.direction, p.margin)
            mc = []
            for s in seeds:
                if s in ba and s in bb and len(ba[s]) == len(bb[s]):
                    ab, bab, pv = mcnemar(ba[s], bb[s])
                    mc.append(f"seed {s}: {ab}/{bab}, p={pv:.2g}")
            pa, pb = p.published
            pub_d = pa - pb if pa is not None and pb is not None else math.nan
            unit = "" if p.metric == "accuracy" or p.attack == TRAINING else f" ({p.metric})"
            where = [w for w in (p.published_attack if p.published_attack != p.attack else "",
                                 c.published_dataset if c.published_dataset
                                 and c.published_dataset != c.dataset else "") if w]
            parts.append({
                "claim": c.id, "part": p.label() + unit, "direction": p.direction
                + (f" (margin {p.margin:g})" if p.direction.startswith("not_") else ""),
                "seeds": t["n"],
                "a": _mean_sd([va[s] for s in seeds], p.metric),
                "b": _mean_sd([vb[s] for s in seeds], p.metric),
                "a - b": _fmt(t["mean"], p.metric),
                "95% CI": (f"[{_fmt(t['lo'], p.metric)}, {_fmt(t['hi'], p.metric)}]"
                           if np.isfinite(t["lo"]) else ""),
                "p (t, seeds)": "" if not np.isfinite(t["p"]) else f"{t['p']:.2g}",
                "published a - b": _fmt(pub_d, p.metric) + (f" ({', '.join(where)})"
                                                            if np.isfinite(pub_d) and where
                                                            else ""),
                "McNemar (within seed)": "; ".join(mc), "verdict": t["verdict"],
                "_mean": t["mean"], "_lo": t["lo"], "_hi": t["hi"], "_published": pub_d,
            })
            got.append(t["verdict"])
        verdicts.append({"claim": c.id, "paper": c.paper, "table": c.table,
                         "data set": c.dataset, "statement": c.statement,
                         "a vs b": f"{c.a} vs {c.b}", "verdict": combine(got)})
    return pd.DataFrame(verdicts), pd.DataFrame(parts)


def _mean_sd(values: list[float], metric: str = "accuracy") -> str:
    k = digits(metric)
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{k}f}"
    return f"{np.mean(values):.{k}f} ± {np.std(values, ddof=1):.{k}f}"

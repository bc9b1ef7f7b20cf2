"""Paper-style tables: methods as rows, attack x eps as columns, mean +- std over seeds."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.budget import format_budget

PAPER_TABLES = Path(__file__).resolve().parents[2] / "data" / "paper_tables"


def method_label(df: pd.DataFrame) -> pd.Series:
    """``method``, the parameters that differ between its runs, and its saliency sources.

    ``sat [resnet10_adv.gbp]``, ``sad (mode=bpda, ratio=0.8)``: rows that differ only
    in the training seed share a label (and are averaged); anything else gets its own.
    """
    method = df["method"].fillna("?").astype(str)
    params = df["params"].fillna("{}").map(json.loads) if "params" in df else None
    extra = pd.Series("", index=df.index)
    if params is not None:
        for m in method.unique():
            rows = params[method == m]
            keys = sorted({k for p in rows for k in p})
            varying = [k for k in keys
                       if len({json.dumps(p.get(k), sort_keys=True) for p in rows}) > 1]
            if varying:
                extra[method == m] = rows.map(lambda p, keys=tuple(varying): " (" + ", ".join(
                    f"{k}={p.get(k)}" for k in keys) + ")")
    src = df["saliency_sources"].fillna("[]").map(lambda s: ",".join(json.loads(s) or []))
    return method + extra + src.map(lambda s: f" [{s}]" if s else "")


def with_view(label: pd.Series, view: pd.Series | None) -> pd.Series:
    """``label <view>`` for a defence scored in several views (SAD), ``label`` otherwise."""
    if view is None:
        return label
    return label + view.fillna("").map(lambda v: f" <{v}>" if v else "")


def add_labels(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``label`` (:func:`method_label`) and the table row ``row`` (label and
    view), in place."""
    df["label"] = method_label(df)
    df["row"] = with_view(df["label"], df.get("view"))
    return df


def column_label(attack: str, eps: float) -> str:
    """``pgd5 4/255`` (``clean`` for clean accuracy)."""
    return attack if attack == "clean" or not np.isfinite(eps) else f"{attack} {format_budget(eps)}"


def load_paper_tables(folder: str | Path | None = None) -> pd.DataFrame:
    """Every ``data/paper_tables/*.csv`` concatenated (empty when there are none)."""
    folder = Path(folder) if folder is not None else PAPER_TABLES
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame(columns=["paper", "table", "dataset", "method", "variant",
                                     "attack", "eps", "value"])
    return pd.concat([pd.read_csv(f, dtype={"eps": str, "variant": str}) for f in files],
                     ignore_index=True)


def _paper_cell(paper: pd.DataFrame, dataset, method, sources: str, attack, eps,
                tables: set | None = None) -> tuple[str, set]:
    """The published value(s) for one cell, and the ``paper table`` names they came from.

    ``tables`` restricts the search (the clean column takes the attack's paper tables).
    """
    if paper.empty:
        return "", set()
    e = "0" if attack == "clean" else format_budget(eps)
    m = paper[(paper["dataset"] == dataset) & (paper["method"] == method)
              & (paper["attack"] == attack) & (paper["eps"] == e)]
    names = m["paper"].str.split().str[0] + " " + m["table"]
    if tables is not None:
        m, names = m[names.isin(tables)], names[names.isin(tables)]
    if sources:
        exact = (m["variant"].fillna("") == sources).to_numpy()
        m, names = (m[exact], names[exact]) if exact.any() else (m, names)
    if m.empty:
        return "", set()
    v = m["value"].astype(float)
    val = f"{v.iloc[0]:.2f}" if len(v) == 1 else f"{v.min():.2f}-{v.max():.2f}"
    return f"{val} ({', '.join(sorted(set(names)))})", set(names)


def latest_rows(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, split, attack, params, eps, metric): the largest ``n``, then the
    newest, so overlapping presets (``quick`` and ``sat`` both run PGD-5) count once."""
    df = results.copy()
    key = [c for c in ("model_sha256", "model", "split", "attack", "attack_params", "eps",
                       "metric", "view") if c in df]
    df["_eps"] = df["eps"].round(9)
    # a worst case belongs to its preset's evaluation: never merged across presets
    df["_wc"] = df.get("preset", "").where(df["attack"] == "worst_case", "") \
        if "preset" in df else ""
    key = ["_eps" if k == "eps" else k for k in key] + ["_wc"]
    sort = [c for c in ("n", "created") if c in df]
    df = df.sort_values(sort, kind="stable") if sort else df
    return df.drop_duplicates(key, keep="last").drop(columns=["_eps", "_wc"]).sort_index()


def _cell(gc: pd.DataFrame) -> str:
    per_seed = gc.groupby("seed", dropna=False)["value"].mean() * 100
    if len(per_seed) > 1:
        return f"{per_seed.mean():.2f} ± {per_seed.std(ddof=1):.2f} (n={len(per_seed)})"
    return f"{per_seed.mean():.2f}"


def accuracy_tables(results: pd.DataFrame, paper: pd.DataFrame | None = None,
                    deviations: dict[str, dict[str, str]] | None = None,
                    ) -> dict[str, pd.DataFrame]:
    """Paper-style tables: rows = methods, cells ``mean ± std (n seeds)`` of accuracy in %,
    each followed by a ``· paper`` column where a published number exists
    (data/paper_tables). An attack run at several budgets gets a table of its own
    (clean + budgets as columns, as paper 000 Table 1); the attacks run at a single
    budget share one table per preset (as paper 001 Table 1: WeakPGD, StrongPGD, ...);
    the worst case gets one per preset.

    ``deviations``: student name -> {setting: reason} (``comparisons.json`` of
    ``salpipe check-sweep``); a row whose student declares any gets a last column
    ``declared deviations`` listing them."""
    paper = load_paper_tables() if paper is None else paper
    every = results[results["metric"] == "accuracy"].copy()
    acc = latest_rows(add_labels(every))
    out = {}
    for (ds, arch, split), g in acc.groupby(["dataset", "arch", "split"], dropna=False, sort=False):
        for name, ga in _table_groups(g):
            ga = pd.concat([matching_clean(every, ga), ga])
            frame = _build(ga, paper, ds, by_attack=not name.startswith("single"),
                           deviations=deviations or {})
            if name.startswith("worst_case") and "attack_params" in ga:
                # say which attacks each budget's minimum is over
                of = ga[ga["attack"] == "worst_case"].drop_duplicates("eps")
                frame.loc["(over attacks)"] = ""
                for eps, params in zip(of["eps"], of["attack_params"]):
                    frame.loc["(over attacks)", format_budget(eps)] = ", ".join(
                        json.loads(params or "{}").get("of", []))
            ns = "/".join(str(v) for v in sorted(ga["n"].unique()))
            out[f"{ds} / {arch} / {split}: {name} (n = {ns})"] = frame[
                _column_order(frame.columns)]
    return out


def _table_groups(g: pd.DataFrame):
    """``(table name, attack rows)`` for one (dataset, arch, split)."""
    preset = g["preset"] if "preset" in g else pd.Series("", index=g.index)
    attacks = [a for a in dict.fromkeys(g["attack"]) if a not in ("clean", "worst_case")]
    single = [a for a in attacks if g.loc[g["attack"] == a, "eps"].nunique() == 1]
    for a in attacks:
        if a not in single:
            yield a, g[g["attack"] == a]
    for p in dict.fromkeys(preset[g["attack"].isin(single)]):
        sel = g["attack"].isin(single) & (preset == p)
        yield "single-budget attacks" + (f", preset {p}" if p else ""), g[sel]
    for p in dict.fromkeys(preset[g["attack"] == "worst_case"]):
        yield "worst_case" + (f", preset {p}" if p else ""), g[
            (g["attack"] == "worst_case") & (preset == p)]


def student_of(model: str) -> str:
    """The sweep's student (or SAD model) name of a run name ``sat_gbp/seed0``."""
    return str(model).split("/")[0]


def row_deviations(models, deviations: dict[str, dict[str, str]]) -> str:
    """``beta: reason; bn_mode: reason`` for the students behind one table row."""
    seen = {}
    for m in dict.fromkeys(models):
        for key, why in (deviations.get(student_of(m)) or {}).items():
            seen.setdefault(f"{key}: {why}", None)
    return "; ".join(seen)


def settings_tables(comparisons: dict) -> dict[str, pd.DataFrame]:
    """Per data set, each student's compared training settings (and SAT's resolved
    alpha) with its declared deviations: the ``comparisons.json`` of check-sweep."""
    out = {}
    devs = comparisons.get("deviations") or {}
    for ds, table in (comparisons.get("settings") or {}).items():
        frame = pd.DataFrame.from_dict(table, orient="index").fillna("")
        frame["declared deviations"] = [row_deviations([n], devs) for n in frame.index]
        out[ds] = frame
    return out


def _build(ga: pd.DataFrame, paper: pd.DataFrame, ds, by_attack: bool,
           deviations: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """Cells of one table; columns are budgets (``by_attack``) or ``attack budget``."""
    table = {}
    for row, gr in ga.groupby("row", sort=True):
        if (gr["attack"] == "clean").all():
            continue
        cells, used = {}, set()
        # attack cells first: the clean column then quotes the same paper tables
        groups = sorted(gr.groupby(["attack", "eps"], sort=False),
                        key=lambda kv: kv[0][0] == "clean")
        for (a, eps), gc in groups:
            col = ("clean" if a == "clean" else format_budget(eps) if by_attack
                   else f"{a} {format_budget(eps)}")
            cells[col] = _cell(gc)
            first = gc.iloc[0]
            srcs = ",".join(json.loads(first["saliency_sources"] or "[]"))
            ref, names = _paper_cell(paper, ds, first["method"], srcs, a, eps,
                                     used if a == "clean" else None)
            used |= names
            if ref:
                cells[f"{col} · paper"] = ref
        if deviations and "model" in gr:
            declared = row_deviations(gr["model"], deviations)
            if declared:
                cells["declared deviations"] = declared
        table[row] = cells
    return pd.DataFrame.from_dict(table, orient="index").fillna("")


def matching_clean(every: pd.DataFrame, attack_rows: pd.DataFrame) -> pd.DataFrame:
    """The clean rows of the same evaluations (model and n) as ``attack_rows``, so a
    table never puts the clean accuracy of 500 images beside attacks on 20.

    A defence evaluated in several views (SAD: adaptive, adaptive_bpda, nonadaptive and
    their worst case ``all``) gets its clean row once per view: the views differ only in
    what the attack sees, never in the clean forward pass, so every row shows it.
    """
    key = [c for c in ("model_sha256", "model", "n") if c in every]
    clean = every[every["attack"] == "clean"]
    sort = [c for c in ("created",) if c in clean]
    clean = clean.sort_values(sort, kind="stable") if sort else clean
    clean = clean.drop_duplicates(key, keep="last")
    views = ["view"] if "view" in attack_rows and "view" in clean else []
    want = attack_rows[key + views].drop_duplicates()
    if not len(want):
        return clean.iloc[:0]
    if views:
        out = clean.drop(columns=["view"]).merge(want, on=key, how="inner")
        if "label" in out:  # the row names the view it now stands in
            out["row"] = with_view(out["label"], out["view"])
        return out
    return clean.merge(want, on=key, how="inner")


def _column_order(cols) -> list[str]:
    """clean first; budgets ascending, or ``attack budget`` columns in preset order; each
    ``· paper`` column right after its own."""
    first_seen = {c.split(" · ")[0]: i for i, c in reversed(list(enumerate(cols)))}

    def key(c: str):
        base = c.split(" · ")[0]
        if base == "clean":
            return (0, 0.0, " · " in c)
        if base == "declared deviations":
            return (2, 0.0, False)
        if " " in base:  # "attack budget": keep the order the preset ran them in
            return (1, float(first_seen[base]), " · " in c)
        return (1, float(Fraction(base)) if "/" in base else float(base), " · " in c)
    return sorted(cols, key=key)


def metric_tables(results: pd.DataFrame,
                  deviations: dict[str, dict[str, str]] | None = None) -> dict[str, pd.DataFrame]:
    """Non-accuracy metrics (Kendall's tau, ISA success, excluded fractions), one table
    per attack: rows = methods, columns = ``<eps> <metric>``, mean over seeds; with
    ``deviations`` (as :func:`accuracy_tables`) a last column of declared deviations."""
    m = latest_rows(results[results["metric"] != "accuracy"])
    if m.empty:
        return {}
    add_labels(m)
    m["col"] = [f"{format_budget(e)} {k}" for e, k in zip(m["eps"], m["metric"])]
    out = {}
    for attack, g in m.groupby("attack", sort=False):
        t = g.pivot_table(index="row", columns="col", values="value", aggfunc="mean")
        cols = sorted(t.columns, key=lambda c: (float(Fraction(c.split()[0])), c))
        ns = "/".join(str(v) for v in sorted(g["n"].unique())) if "n" in g else "?"
        t = t[cols].round(3)
        if deviations and "model" in g:
            declared = {row: row_deviations(gr["model"], deviations)
                        for row, gr in g.groupby("row")}
            if any(declared.values()):
                t["declared deviations"] = [declared.get(r, "") for r in t.index]
        out[f"{attack} (n = {ns})"] = t
    return out


def flags_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every flag raised, with the model, attack and budget it came from."""
    rows = []
    for _, r in results.iterrows():
        for flag in json.loads(r["flags"] or "[]"):
            rows.append({"model": r["model"], "method": r["method"], "attack": r["attack"],
                         "eps": format_budget(r["eps"]) if np.isfinite(r["eps"]) else "",
                         "flag": flag})
    return pd.DataFrame(rows, columns=["model", "method", "attack", "eps", "flag"]).drop_duplicates()

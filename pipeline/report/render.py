"""``run_report``: results tables -> ``report.md`` + ``report.html`` + PNG figures."""

from __future__ import annotations

import html
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pipeline.core.io import atomic_dir
from pipeline.report.figures import robustness_curves, training_cost
from pipeline.report.tables import (
    accuracy_tables,
    flags_table,
    load_paper_tables,
    metric_tables,
)

log = logging.getLogger(__name__)


def read_training_cost(runs: list[Path]) -> pd.DataFrame:
    """``method, run, epoch, epoch_seconds`` from each run directory's ``metrics.jsonl``."""
    rows = []
    for run in runs:
        run = Path(run)
        side = json.loads((run / "model.json").read_text()) if (run / "model.json").is_file() else {}
        metrics = run / "metrics.jsonl"
        if not metrics.is_file():
            raise FileNotFoundError(f"run {run} has no metrics.jsonl")
        for line in metrics.read_text().splitlines():
            if line.strip():
                m = json.loads(line)
                if "epoch_seconds" in m:
                    rows.append({"method": side.get("method") or run.name, "run": run.name,
                                 "epoch": m.get("epoch"), "epoch_seconds": m["epoch_seconds"]})
    return pd.DataFrame(rows, columns=["method", "run", "epoch", "epoch_seconds"])


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_\n"
    cols = [""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, r in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in r.values]) + " |")
    return "\n".join(lines) + "\n"


def render_report(results: list[Path], out_dir: Path, runs: list[Path] | None = None,
                  galleries: list[Path] | None = None,
                  draw: Callable[[Path], list[Path]] | None = None) -> dict:
    """Build the report from one or more results tables (it reads tables, runs nothing).

    Args:
        results: Parquet tables written by ``salpipe evaluate``.
        out_dir: output folder (replaced atomically): ``report.md``, ``report.html``, PNGs.
        runs: training run directories whose ``metrics.jsonl`` give the per-epoch cost.
        galleries: saliency gallery PNGs (made elsewhere) to include as they are.
        draw: ``draw(folder) -> PNG paths`` drawing more galleries into the report's
            folder (the report stage draws cached saliency sources this way).

    Returns:
        ``{"out", "tables", "figures", "flags"}``.
    """
    frames = []
    for p in results:
        if not Path(p).is_file():
            raise FileNotFoundError(f"results table {p} not found")
        frames.append(pd.read_parquet(p))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if df.empty:
        raise ValueError(f"results {', '.join(map(str, results))} hold no rows")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        drawn = draw(tmp) if draw is not None else []
        summary = _write(df, tmp, runs or [], list(galleries or []), drawn)
    log.info("report written to %s", out_dir)
    return {**summary, "out": str(out_dir)}


def _write(df: pd.DataFrame, out: Path, runs: list[Path], galleries: list[Path],
           drawn: list[Path]) -> dict:
    tables = accuracy_tables(df, load_paper_tables())
    metrics, flags = metric_tables(df), flags_table(df)
    figures = robustness_curves(df, out)
    cost = read_training_cost(runs)
    cost_png = training_cost(cost, out)
    gallery = [p.name for p in drawn]
    for g in galleries:
        if not Path(g).is_file():
            raise FileNotFoundError(f"gallery image {g} not found")
        shutil.copy(g, out / Path(g).name)
        gallery.append(Path(g).name)
    md = ["# salpipe evaluation report\n",
          (f"{len(df)} result rows from {df['model'].nunique()} model(s); accuracy in %, "
           "mean ± std over training seeds; `· paper` columns give the published number "
           "for the same cell (data/paper_tables).\n")]
    parts = [("Accuracy", [(k, v) for k, v in tables.items()]),
             ("Interpretation metrics", list(metrics.items()) or [("", pd.DataFrame())]),
             ("Flags raised", [("", flags)])]
    if not cost.empty:
        per = cost.groupby("method")["epoch_seconds"].agg(["mean", "std", "count"]).round(2)
        parts.append(("Training cost (seconds per epoch)", [("", per)]))
    for title, items in parts:
        md.append(f"\n## {title}\n")
        for sub, t in items:
            md.append(f"\n### {sub}\n\n" if sub else "\n")
            md.append(_md(t))
    md.append("\n## Figures\n")
    for f in figures + ([cost_png] if cost_png else []):
        md.append(f"\n![{f.stem}]({f.name})\n")
    if gallery:
        md.append("\n## Saliency galleries\n")
        md += [f"\n![{g}]({g})\n" for g in gallery]
    (out / "report.md").write_text("".join(md))
    (out / "report.html").write_text(_html(parts, figures, cost_png, gallery, len(df)))
    return {"tables": list(tables), "figures": [f.name for f in figures],
            "flags": len(flags)}


def _html(parts, figures, cost_png, gallery, n_rows) -> str:
    css = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px;"
           "margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px}th{background:#eee}"
           "td:nth-child(odd){background:#fafafa}img{max-width:100%}")
    body = [(f"<h1>salpipe evaluation report</h1><p>{n_rows} result rows; accuracy in %, "
             "mean ± std over training seeds; <i>· paper</i> columns: published numbers.</p>")]
    for title, items in parts:
        body.append(f"<h2>{html.escape(title)}</h2>")
        for sub, t in items:
            if sub:
                body.append(f"<h3>{html.escape(sub)}</h3>")
            body.append(t.to_html(escape=True) if not t.empty else "<p><i>none</i></p>")
    body.append("<h2>Figures</h2>")
    body += [f'<img src="{f.name}">' for f in figures + ([cost_png] if cost_png else [])]
    if gallery:
        body.append("<h2>Saliency galleries</h2>")
        body += [f'<img src="{html.escape(g)}">' for g in gallery]
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{css}</style></head>" \
           f"<body>{''.join(body)}</body></html>"

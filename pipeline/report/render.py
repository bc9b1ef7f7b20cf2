"""``run_report``: results tables -> ``report.md`` + ``report.html`` + PNG figures.

The report folder is marked by :data:`MARKER` (``report.json``: the command, its inputs
and the files the report wrote). A report replaces only an empty folder, a missing one
or an earlier report (marked, or an unmarked one of only ``report.md``, ``report.html``
and PNGs); any other folder is refused before anything is written. The folder is built
beside ``--out`` and swapped in whole, so at every moment ``--out`` holds the old report
or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

import pipeline
from pipeline.core.io import atomic_dir, check_output_location
from pipeline.report.benchmarks import cost_per_rule, read_benchmarks
from pipeline.report.claims import judge, load_claims, run_identity
from pipeline.report.claims import training_cost as claims_training_cost
from pipeline.report.figures import robustness_curves, training_cost
from pipeline.report.pages import Outline, Section, render_html, render_markdown
from pipeline.report.papers import paper_sections
from pipeline.report.tables import (
    accuracy_tables,
    flags_table,
    load_paper_tables,
    metric_tables,
    settings_tables,
)

log = logging.getLogger(__name__)

MARKER = "report.json"  # marks a folder as a salpipe report (written last)
MARKER_KIND = "salpipe report"
# What the report reads from each results table (others are optional).
REPORT_COLUMNS = ["dataset", "split", "arch", "method", "saliency_sources", "seed", "model",
                  "n", "attack", "eps", "metric", "value", "flags"]
# Snakemake writes .snakemake_timestamp into a directory() output it made
_OWN_FILES = ("report.md", "report.html", MARKER, ".snakemake_timestamp")


def read_results_tables(results: list[Path]) -> pd.DataFrame:
    """Every results table concatenated; each must exist, be Parquet, hold rows and the
    report's columns (an error names the table at fault)."""
    if not results:
        raise ValueError("no results tables given: name one or more with --results")
    frames = []
    for p in map(Path, results):
        if p.is_dir():
            raise ValueError(f"results table {p} is a folder, not a Parquet file; give the "
                             "file written by `salpipe evaluate --out`")
        if not p.is_file():
            raise FileNotFoundError(f"results table {p} not found; give the file written "
                                    "by `salpipe evaluate --out`")
        try:
            df = pd.read_parquet(p)
        except (pa.ArrowException, OSError, ValueError) as e:
            why = " ".join(str(e).split())[:200]
            raise ValueError(f"results table {p} is not a Parquet file ({why}); give the "
                             "file written by `salpipe evaluate --out`") from None
        if df.empty:
            raise ValueError(f"results table {p} holds no rows (an empty table): evaluate "
                             "into it with `salpipe evaluate`, or leave it out of --results")
        missing = [c for c in REPORT_COLUMNS if c not in df]
        if missing:
            raise ValueError(f"results table {p} is not a salpipe results table (no "
                             f"column(s) {', '.join(missing)}); give the file written by "
                             "`salpipe evaluate --out`")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _listing(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _read_marker(folder: Path) -> dict | None:
    """The marker of an earlier report in ``folder`` (None when there is none)."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != MARKER_KIND:
        return None
    return data


def _is_unmarked_report(folder: Path, names: list[str]) -> bool:
    """A report written before reports were marked: ``report.md`` / ``report.html`` and
    PNGs only, ``report.md`` (if there) starting with the report's title."""
    if not {"report.md", "report.html"} & set(names):
        return False
    for name in names:
        if not (folder / name).is_file() or not (
                name in ("report.md", "report.html") or name.endswith(".png")):
            return False
    md = folder / "report.md"
    return not md.is_file() or md.read_text(errors="replace").startswith(
        "# salpipe evaluation report")


def check_report_dir(out_dir: str | Path) -> None:
    """Refuse an ``out_dir`` that the report must not replace: a file, or a folder holding
    anything but an earlier report (FileExistsError naming the folder and its content).
    A missing or empty folder, or an earlier report, is fine."""
    out = Path(out_dir)
    check_output_location(out, "report folder")
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"report folder {out} exists and is a "
                              f"{'link' if out.is_symlink() else 'file'}, not a folder; "
                              "it was left as it is: give another --out")
    names = sorted(os.listdir(out))
    if not names:
        return
    marker = _read_marker(out)
    if marker is None:
        if _is_unmarked_report(out, names):
            return
        raise FileExistsError(
            f"report folder {out} already holds files that are not a salpipe report "
            f"({_listing(names)}); a report replaces its whole folder, so nothing was "
            "written: give a new or empty --out folder")
    extra = sorted(set(names) - set(marker.get("files") or []) - set(_OWN_FILES))
    if extra:
        raise FileExistsError(
            f"report folder {out} holds an earlier report plus files it did not write "
            f"({_listing(extra)}); a report replaces its whole folder, so nothing was "
            "written: move those files out, or give another --out")


def _check_inputs(runs: list[Path], galleries: list[Path]) -> None:
    for run in map(Path, runs):
        if not run.is_dir():
            raise FileNotFoundError(f"run directory {run} not found (--runs)")
        if not (run / "metrics.jsonl").is_file():
            raise FileNotFoundError(f"run {run} has no metrics.jsonl (--runs takes "
                                    "training run directories)")
    for g in map(Path, galleries):
        if not g.is_file():
            raise FileNotFoundError(f"gallery image {g} not found (--gallery)")
        if g.name in _OWN_FILES:
            raise ValueError(f"gallery image {g} has the name of a report file; rename it")


def cost_row(run: Path, method: str) -> str:
    """The cost table's row of a run directory: ``<dataset>/<model>`` for the sweep's
    layout (:func:`~pipeline.report.claims.run_identity`), else its method (runs of one
    method on two data sets, or as two students, cost differently)."""
    identity = run_identity(run)
    return f"{identity[0]}/{identity[1]}" if identity else method


def read_training_cost(runs: list[Path]) -> pd.DataFrame:
    """``method, row, path, run, epoch, epoch_seconds`` from each run directory's
    ``metrics.jsonl`` (``row``: :func:`cost_row`; ``path``: the run directory)."""
    rows = []
    for run in runs:
        run = Path(run)
        side = json.loads((run / "model.json").read_text()) if (run / "model.json").is_file() else {}
        metrics = run / "metrics.jsonl"
        if not metrics.is_file():
            raise FileNotFoundError(f"run {run} has no metrics.jsonl")
        method = side.get("method") or run.name
        for line in metrics.read_text().splitlines():
            if line.strip():
                m = json.loads(line)
                if "epoch_seconds" in m:
                    rows.append({"method": method, "row": cost_row(run, method),
                                 "path": str(run), "run": run.name, "epoch": m.get("epoch"),
                                 "epoch_seconds": m["epoch_seconds"]})
    return pd.DataFrame(rows, columns=["method", "row", "path", "run", "epoch",
                                       "epoch_seconds"])


def cost_per_row(cost: pd.DataFrame) -> pd.DataFrame:
    """Per cost row: the mean seconds per epoch over its runs, their sd (over runs, each
    run its mean over epochs), the number of runs and of epochs."""
    per_run = cost.groupby(["row", "path"])["epoch_seconds"].agg(["mean", "count"])
    g = per_run.groupby(level="row")
    return pd.DataFrame({"s / epoch": g["mean"].mean().round(2),
                         "sd over runs": g["mean"].std().round(2),
                         "runs": g["mean"].count(), "epochs": g["count"].sum()})


def render_report(results: list[Path], out_dir: Path, runs: list[Path] | None = None,
                  galleries: list[Path] | None = None,
                  draw: Callable[[Path], list[Path]] | None = None,
                  inputs: dict | None = None, comparisons: dict | None = None,
                  benchmarks: str | Path | None = None) -> dict:
    """Build the report from one or more results tables (it reads tables, runs nothing).

    Every input is checked before anything is written: each results table must exist,
    be Parquet and hold rows; ``out_dir`` must be missing, empty or an earlier report
    (:func:`check_report_dir`); runs and galleries must exist.

    Args:
        results: Parquet tables written by ``salpipe evaluate``.
        out_dir: output folder (replaced atomically): ``report.md``, ``report.html``, PNGs
            and the marker ``report.json``.
        runs: training run directories whose ``metrics.jsonl`` give the per-epoch cost.
        galleries: saliency gallery PNGs (made elsewhere) to include as they are.
        draw: ``draw(folder) -> PNG paths`` drawing more galleries into the report's
            folder (the report stage draws cached saliency sources this way).
        inputs: more inputs to record in the marker (e.g. the gallery store).
        comparisons: the sweep's ``comparisons.json`` (``salpipe check-sweep``): each
            student's training settings and declared deviations, printed in a section
            of their own and beside the rows they touch.
        benchmarks: a folder of Snakemake benchmark files, ``<rule>/<job>.tsv``
            (:mod:`pipeline.report.benchmarks`): a cost table per rule in the cost
            section. A missing folder, or one without files, adds nothing; a file that
            is not a benchmark table is an error naming it, before anything is written.

    Returns:
        ``{"out", "tables", "figures", "flags"}``.
    """
    df = read_results_tables(list(results))
    out_dir = Path(out_dir)
    check_report_dir(out_dir)
    _check_inputs(list(runs or []), list(galleries or []))
    jobs = read_benchmarks(benchmarks)
    with atomic_dir(out_dir, check=lambda: check_report_dir(out_dir)) as tmp:
        drawn = draw(tmp) if draw is not None else []
        summary = _write(df, tmp, runs or [], list(galleries or []), drawn, comparisons,
                         jobs)
        marker = {"kind": MARKER_KIND, "command": "salpipe report",
                  "results": [str(p) for p in results],
                  "runs": [str(p) for p in runs or []],
                  "galleries": [str(p) for p in galleries or []], **(inputs or {}),
                  **({"benchmarks": str(benchmarks)} if benchmarks is not None else {}),
                  "files": sorted(p.name for p in tmp.iterdir()),
                  "salpipe_version": pipeline.__version__,
                  "created": datetime.now(UTC).isoformat(timespec="seconds")}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, default=str) + "\n")
    log.info("report written to %s", out_dir)
    return {**summary, "out": str(out_dir)}


def defences_first(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables with a leading one per worst-case table holding defences: only their
    per-example worst case over every attack and view (rows ``<all>``), the number to
    read for a defence; every view stays in the tables beneath."""
    lead = {}
    for name, t in tables.items():
        if "worst_case" not in name:
            continue
        rows = [r for r in t.index if str(r).endswith("<all>")]
        if rows:
            head, _, rest = name.partition(": ")
            lead[f"{head}: defences, worst case over every attack and view ({rest})"] = \
                t.loc[rows]
    return {**lead, **tables}


def _cost_section(per_row: pd.DataFrame, jobs: pd.DataFrame | None) -> list[Section]:
    """``Cost``: seconds per epoch per data set and model (``per_row``:
    :func:`cost_per_row` of ``--runs``) and every Snakemake job by rule
    (``--benchmarks``); no section when neither was given."""
    tables = []
    if not per_row.empty:
        tables.append(("Training cost (seconds per epoch, from --runs)", per_row))
    if jobs is not None and not jobs.empty:
        tables.append(("Snakemake jobs per rule (benchmark files, --benchmarks)",
                       cost_per_rule(jobs)))
    return [Section("Cost", tables)] if tables else []


def _verdict_sections(df: pd.DataFrame, runs: list[Path],
                      deviations: dict[str, dict[str, str]] | None = None) -> list[Section]:
    """``Verdicts``: each claim of pipeline/resources/claims.yaml whose two rows the
    results hold, with the numbers behind each part (pipeline/report/claims.py), then
    one section per paper laid out like its tables (pipeline/report/papers.py); no
    section when the results test none."""
    claims, cost = load_claims(), claims_training_cost(runs)
    verdicts, parts = judge(claims, df, cost)
    if verdicts.empty:
        return []
    # the verdict next to the claim's name, so it is read before anything scrolls
    verdicts = verdicts[["claim", "verdict", *[c for c in verdicts.columns
                                               if c not in ("claim", "verdict")]]]
    shown = parts[["claim", "part", "verdict", *[c for c in parts.columns if c not in
                                                ("claim", "part", "verdict")
                                                and not c.startswith("_")]]]
    return [Section("Verdicts on the papers' claims", [
        ("Seed is the unit of replication: paired t-test over per-seed differences a - b "
         "with its 95 % interval; McNemar over test images is within one seed only",
         verdicts.set_index("claim")),
        ("The numbers behind each verdict (accuracy in %, mean ± std over seeds)",
         shown.set_index("claim"))])] + paper_sections(claims, df, cost, deviations)


def _write(df: pd.DataFrame, out: Path, runs: list[Path], galleries: list[Path],
           drawn: list[Path], comparisons: dict | None = None,
           jobs: pd.DataFrame | None = None) -> dict:
    deviations = (comparisons or {}).get("deviations") or {}
    tables = defences_first(accuracy_tables(df, load_paper_tables(), deviations))
    metrics, flags = metric_tables(df, deviations), flags_table(df)
    figures = robustness_curves(df, out)
    per_row = cost_per_row(read_training_cost(runs))
    cost_png = training_cost(per_row, out)
    gallery = [p.name for p in drawn]
    for g in galleries:
        if not Path(g).is_file():
            raise FileNotFoundError(f"gallery image {g} not found")
        shutil.copy(g, out / Path(g).name)
        gallery.append(Path(g).name)
    sections = _verdict_sections(df, runs, deviations) + [Section("Accuracy",
                                                                  list(tables.items()))]
    if comparisons:
        sections.append(Section("Training settings and declared deviations "
                                "(salpipe check-sweep)",
                                list(settings_tables(comparisons).items())))
    sections += [Section("Interpretation metrics",
                         list(metrics.items()) or [("", pd.DataFrame())]),
                 Section("Flags raised", [("", flags)])]
    sections += _cost_section(per_row, jobs)
    outline = Outline(n_rows=len(df), n_models=df["model"].nunique(), sections=sections,
                      figures=[f.name for f in figures + ([cost_png] if cost_png else [])],
                      galleries=gallery)
    (out / "report.md").write_text(render_markdown(outline))
    (out / "report.html").write_text(render_html(outline))
    return {"tables": list(tables), "figures": [f.name for f in figures],
            "flags": len(flags)}

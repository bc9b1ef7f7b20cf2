"""``salpipe publish``: a finished sweep's evidence -> a folder to commit (no models).

What ``docs/results/<sweep>/`` holds: the sweep's report (``report.md``, ``report.html``,
its figures), ``results.csv`` (every row of every results table of the sweep, the
per-image ``outcome`` bits included, so every number and test of the report can be
recomputed), ``benchmarks.csv`` (every job's Snakemake benchmark: wall seconds, peak RSS
in MB, CPU seconds) and ``comparisons.json`` (the settings and declared deviations).
Weights, caches and logs stay behind. ``publish.json`` lists the files written; a file
of the folder that no publish wrote (a hand-written README) is never touched, and a
file an earlier publish wrote that this one does not is removed.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

import pipeline
from pipeline.core.io import atomic_path, atomic_write_bytes, check_output_location
from pipeline.evaluate.table import COLUMNS, read_results
from pipeline.report.benchmarks import benchmark_files, read_benchmark
from pipeline.report.render import MARKER, MARKER_KIND

log = logging.getLogger(__name__)

PUBLISHED = "publish.json"
SORT = ["dataset", "model", "seed", "preset", "view", "attack", "eps", "metric"]


def _results(sweep_dir: Path) -> pd.DataFrame:
    paths = sorted((sweep_dir / "results").rglob("*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{sweep_dir / 'results'}: no results table (*.parquet); "
                                "run the sweep's evaluations first")
    tables = [read_results(p) for p in paths]
    df = pd.concat([t for t in tables if len(t)], ignore_index=True)
    df = df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]
    return df.sort_values(SORT, kind="stable", na_position="first").reset_index(drop=True)


def _benchmarks(sweep_dir: Path) -> pd.DataFrame:
    folder = sweep_dir / "benchmarks"
    jobs = [read_benchmark(p, folder) for p in benchmark_files(folder)]
    rows = [{"job": f"{j['rule']}/{j['job']}", "s": j["s"], "max_rss": j["max_rss"],
             "cpu_time": j["cpu_time"]} for j in jobs]
    return pd.DataFrame(rows, columns=["job", "s", "max_rss", "cpu_time"])


def _report_files(report_dir: Path) -> list[Path]:
    marker = report_dir / MARKER
    try:
        kind = json.loads(marker.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind != MARKER_KIND:
        raise FileNotFoundError(f"{report_dir} is not a salpipe report (no {MARKER} of "
                                "`salpipe report`); run the sweep's report rule first, "
                                "or give --report")
    # hidden files (Snakemake's .snakemake_timestamp of a directory output) are not
    # the report's
    return sorted(p for p in report_dir.iterdir()
                  if p.is_file() and p.name != MARKER and not p.name.startswith("."))


def _earlier(out: Path) -> list[str]:
    """The files an earlier publish wrote into ``out`` (none if it did not)."""
    try:
        return list(json.loads((out / PUBLISHED).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def run_publish(sweep_dir: str | Path, out: str | Path,
                report_dir: str | Path | None = None) -> dict:
    """Write the evidence of the sweep folder ``sweep_dir`` (``data/<sweep>``) into ``out``.

    Reads ``<sweep_dir>/results/**/*.parquet``, ``benchmarks/<rule>/**/*.tsv``,
    ``comparisons.json`` (if there) and the report folder (``report_dir``, default
    ``<sweep_dir>/report``). Every input is read and checked before anything is written;
    each file is written atomically. A missing sweep folder, no results table, or a
    report folder that is not a salpipe report is a FileNotFoundError naming it; a table
    that is not a results table a ValueError naming it.

    Returns:
        ``{"out", "files", "rows", "jobs"}``.
    """
    sweep_dir, out = Path(sweep_dir), Path(out)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} not found (give data/<sweep>)")
    report_dir = Path(report_dir) if report_dir is not None else sweep_dir / "report"
    results, jobs = _results(sweep_dir), _benchmarks(sweep_dir)
    copies = _report_files(report_dir)
    comparisons = sweep_dir / "comparisons.json"
    if comparisons.is_file():
        copies.append(comparisons)
    clash = [p.name for p in copies if p.name in ("results.csv", "benchmarks.csv",
                                                  PUBLISHED)]
    if clash:
        raise ValueError(f"{report_dir} holds {', '.join(clash)}, a name publish writes")
    check_output_location(out / PUBLISHED, "published folder")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    with atomic_path(out / "benchmarks.csv") as tmp:
        jobs.to_csv(tmp, index=False)
    for src in copies:
        with atomic_path(out / src.name) as tmp:
            shutil.copyfile(src, tmp)
    files = sorted(["results.csv", "benchmarks.csv", *(p.name for p in copies)])
    for stale in set(_earlier(out)) - set(files) - {PUBLISHED}:
        (out / stale).unlink(missing_ok=True)
    marker = {"command": "salpipe publish", "sweep": sweep_dir.name, "files": files,
              "results_rows": len(results), "jobs": len(jobs),
              "salpipe_version": pipeline.__version__,
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    atomic_write_bytes(out / PUBLISHED, (json.dumps(marker, indent=2) + "\n").encode())
    log.info("published %s into %s: %d files", sweep_dir, out, len(files))
    return {"out": str(out), "files": files, "rows": len(results), "jobs": len(jobs)}

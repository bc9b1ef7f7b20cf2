"""Snakemake benchmark files -> the report's cost per rule (``salpipe report --benchmarks``).

A rule with ``benchmark:`` writes one TSV per job: a header line, then one row per
repeat, with the columns of :data:`BENCHMARK_COLUMNS` (Snakemake's extended format
adds more, which are ignored). Seconds and MB are Snakemake's own: ``s`` wall time,
``cpu_time`` user + system seconds of the job's processes, ``max_rss`` their peak
resident memory in MB. A job too short to be sampled writes ``NA`` (or ``-``) for the
memory and CPU columns: such a value counts as unknown, never as 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in",
                     "io_out", "mean_load", "cpu_time")
USED = ("s", "cpu_time", "max_rss")  # the columns the cost table reads
MISSING = ("NA", "-", "")  # Snakemake's "not measured"
JOB_COLUMNS = ["rule", "job", "repeats", *USED]
COST_COLUMNS = ["jobs", "wall s (total)", "CPU s (total)", "peak max_rss (MB)",
                "slowest job"]


def benchmark_files(folder: str | Path) -> list[Path]:
    """Every ``<folder>/<rule>/**/*.tsv``, sorted; none for a missing folder.

    Raises NotADirectoryError when ``folder`` is a file."""
    folder = Path(folder)
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise NotADirectoryError(f"benchmarks folder {folder} is a file, not a folder "
                                 "(--benchmarks takes the folder holding <rule>/*.tsv)")
    return sorted(p for rule in folder.iterdir() if rule.is_dir()
                  for p in rule.rglob("*.tsv") if p.is_file())


def _number(path: Path, column: str, values: pd.Series) -> pd.Series:
    """``values`` as floats (Snakemake's NA / - as NaN); ValueError naming the file, the
    line and the column of the first value that is not a number."""
    text = values.str.strip()
    nums = pd.to_numeric(text.where(~text.isin(MISSING)), errors="coerce")
    bad = nums.isna() & ~text.isin(MISSING)
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise ValueError(f"benchmark file {path}: line {i + 2}, column {column!r} is "
                         f"{text.iloc[i]!r}, not a number, NA or -")
    if (nums < 0).any():
        raise ValueError(f"benchmark file {path}: column {column!r} holds a negative value")
    return nums


def read_benchmark(path: str | Path, folder: str | Path) -> dict:
    """One job: ``rule`` (its folder under ``folder``), ``job`` (the rest of its path,
    without ``.tsv``), ``repeats``, and over its repeats the mean ``s`` and ``cpu_time``
    and the largest ``max_rss``. A file that is not a Snakemake benchmark (no header,
    a column missing, no row, a value that is not a number) is a ValueError naming it."""
    path, folder = Path(path), Path(folder)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f, delimiter="\t"))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"benchmark file {path} is not a Snakemake benchmark table "
                         f"({' '.join(str(e).split())[:200]})") from None
    if not lines:
        raise ValueError(f"benchmark file {path} is empty (a Snakemake benchmark table "
                         "has a header line and a row per repeat)")
    header, *rows = lines
    missing = [c for c in USED if c not in header]
    if missing or len(set(header)) != len(header):
        raise ValueError(f"benchmark file {path} is not a Snakemake benchmark table: "
                         + (f"no column(s) {', '.join(missing)}" if missing else
                            "a column named twice") + " in its header (expected "
                         f"{' '.join(BENCHMARK_COLUMNS)}, tab-separated)")
    rows = [r for r in rows if r]  # a trailing blank line
    if not rows:
        raise ValueError(f"benchmark file {path} holds a header but no row")
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise ValueError(f"benchmark file {path}: line {i + 2} has {len(r)} fields, "
                             f"its header {len(header)}")
    df = pd.DataFrame(rows, columns=header, dtype=str)
    nums = {c: _number(path, c, df[c]) for c in USED}
    rel = path.relative_to(folder)
    return {"rule": rel.parts[0], "job": Path(*rel.parts[1:]).with_suffix("").as_posix(),
            "repeats": len(df), "s": nums["s"].mean(), "cpu_time": nums["cpu_time"].mean(),
            "max_rss": nums["max_rss"].max()}


def read_benchmarks(folder: str | Path | None) -> pd.DataFrame:
    """One row per job of every benchmark file under ``folder`` (:func:`read_benchmark`,
    columns :data:`JOB_COLUMNS`); empty for ``None``, a missing folder or one without
    files. Every file is read before the report writes anything."""
    if folder is None:
        return pd.DataFrame(columns=JOB_COLUMNS)
    rows = [read_benchmark(p, folder) for p in benchmark_files(folder)]
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def _fmt(x: float) -> str:
    return "NA" if pd.isna(x) else f"{x:.1f}"


def cost_per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, total wall and CPU seconds, peak ``max_rss`` (MB) and the slowest
    job with its seconds. A total is ``NA`` only when no job of the rule measured it;
    jobs that did not are left out of it (Snakemake's NA: too short to sample)."""
    out = {}
    for rule, g in jobs.groupby("rule", sort=True):
        slow = g.loc[g["s"].idxmax()] if g["s"].notna().any() else None
        out[rule] = {"jobs": str(len(g)),
                     "wall s (total)": _fmt(g["s"].sum(min_count=1)),
                     "CPU s (total)": _fmt(g["cpu_time"].sum(min_count=1)),
                     "peak max_rss (MB)": _fmt(g["max_rss"].max()),
                     "slowest job": "NA" if slow is None
                     else f"{slow['job']} ({_fmt(slow['s'])} s)"}
    frame = pd.DataFrame.from_dict(out, orient="index", columns=COST_COLUMNS)
    frame.index.name = "rule"
    return frame

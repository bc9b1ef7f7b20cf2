"""One report section per paper, laid out like its tables: the rows its claims compare
(ours by student name, the paper's row beside it), clean accuracy first (as the papers'
tables open with it; the published one from the transcribed tables), then one column
per compared attack and budget, our mean ± sd [95 % interval] over seeds next to the
published number.

Built from the claims (pipeline/resources/claims.yaml), which say which of our rows is
which of the paper's and what the paper printed for it; where the paper's number is of
another attack, architecture or data set, the table's notes say so.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from pipeline.report.claims import TRAINING, Claim, Part, digits, row_values
from pipeline.report.pages import DEVIATIONS, PAPER_MARK, Section
from pipeline.report.tables import (
    load_paper_tables,
    row_deviations,
    seed_stats,
    student_of,
)


def _cell(values: list[float], metric: str) -> str:
    mean, sd, lo, hi, n = seed_stats(values)
    if n == 0:
        return ""
    k = digits(metric)
    if n == 1:
        return f"{mean:.{k}f} (1 seed)"
    return f"{mean:.{k}f} ± {sd:.{k}f} [{lo:.{k}f}, {hi:.{k}f}]"


def _published(value: float | None, metric: str) -> str:
    return "" if value is None else f"{value:.{max(digits(metric), 2)}f}".rstrip("0").rstrip(".")


def paper_sections(claims: list[Claim], results: pd.DataFrame,
                   cost: pd.DataFrame | None = None,
                   deviations: dict[str, dict[str, str]] | None = None,
                   published: pd.DataFrame | None = None) -> list[Section]:
    """``{paper}``: per (table, data set) of its claims whose rows the results hold, a
    table of those rows; papers in the claims file's order, none without results.
    ``deviations``: student -> {setting: reason} (``comparisons.json``); a last column
    lists a row's, as the accuracy tables do. ``published``: the transcribed tables
    (default :func:`~pipeline.report.tables.load_paper_tables`), read for each row's
    published clean accuracy."""
    published = load_paper_tables() if published is None else published
    present = set(zip(results["dataset"], results["model"].map(student_of)))
    cost = cost if cost is not None else pd.DataFrame(
        columns=["dataset", "model", "seed", "epoch_seconds"])
    groups: dict[str, dict[tuple[str, str], list[Claim]]] = {}
    for c in claims:
        if (c.dataset, c.a) in present and (c.dataset, c.b) in present:
            groups.setdefault(c.paper, {}).setdefault((c.table, c.dataset), []).append(c)
    sections = []
    for paper, tables in groups.items():
        out = []
        for (table, dataset), cs in tables.items():
            frame = _table(cs, results, cost, deviations or {}, published)
            out.append((f"{table}, {dataset}: ours beside the paper's", frame))
        sections.append(Section(f"Paper {paper}", out))
    return sections


def _column(p: Part) -> str:
    return p.label()  # "pgd20 1/255", "aai kendall_tau 2/255", "training epoch_seconds"


def _published_clean(published: pd.DataFrame, c: Claim, row: str) -> float | None:
    """The clean accuracy the paper's table prints for its row ``row``, if exactly one."""
    if not row:
        return None
    p = published
    got = p[(p["paper"] == c.paper) & (p["table"] == c.table) & (p["attack"] == "clean")
            & (p["dataset"] == (c.published_dataset or c.dataset)) & (p["paper_method"] == row)]
    if c.published_arch:
        got = got[got["arch"] == c.published_arch]
    return float(got["value"].iloc[0]) if len(got) == 1 else None


def _with_clean(c: Claim, published: pd.DataFrame) -> tuple[Part, ...]:
    """The claim's parts, led by clean accuracy (with the paper's) unless one is clean."""
    if any(p.attack == "clean" for p in c.parts):
        return c.parts
    names = c.published_rows or ("", "")
    pub = tuple(_published_clean(published, c, r) for r in names)
    return (Part("clean", 0.0, "accuracy", "greater", 0.0, pub, "clean"),) + c.parts


def _table(claims: list[Claim], results: pd.DataFrame, cost: pd.DataFrame,
           deviations: dict[str, dict[str, str]], published: pd.DataFrame) -> pd.DataFrame:
    """Rows: the claims' models (with the paper's row name); per part a column of ours,
    and the published number beside the column of the paper's own attack where the
    results hold it (PGD-5 beside PGD-5), else beside the part's. A column with nothing
    in it (no clean rows in the results, no published number) is left out."""
    rows: dict[str, dict[str, str]] = {}
    model_of: dict[str, str] = {}  # row label -> student
    notes: list[str] = []
    for c in claims:
        names = c.published_rows or ("", "")
        parts = _with_clean(c, published)  # once per claim: it filters the whole table
        for model, paper_row, side in ((c.a, names[0], 0), (c.b, names[1], 1)):
            label = f"{model} (paper: {paper_row})" if paper_row else model
            row = rows.setdefault(label, {})
            model_of[label] = model
            for p in parts:
                values, _ = row_values(results, cost, c, p, model)
                row.setdefault(_column(p), _cell(list(values.values()), p.metric))
                if p.attack == TRAINING:
                    continue
                beside = p
                if p.published_attack != p.attack:
                    own = replace(p, attack=p.published_attack)
                    theirs, _ = row_values(results, cost, c, own, model)
                    if theirs:  # the paper's attack is in the results too
                        beside = own
                        row.setdefault(_column(own), _cell(list(theirs.values()), p.metric))
                col = _column(beside) + PAPER_MARK
                pub = p.published[side]
                if pub is not None or col not in row:
                    row[col] = _published(pub, p.metric)
                where = [w for w in (
                    f"its {p.published_attack}" if beside.attack != p.published_attack else "",
                    f"{c.published_arch}" if c.published_arch else "",
                    f"on {c.published_dataset}" if c.published_dataset
                    and c.published_dataset != c.dataset else "") if w]
                if where and pub is not None:
                    note = f"{col}: the paper's number is {', '.join(where)}"
                    if note not in notes:
                        notes.append(note)
    columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).fillna("")
    frame = frame.loc[:, (frame != "").any()]
    listed = [row_deviations([model_of[label]], deviations) for label in frame.index]
    if any(listed):
        frame[DEVIATIONS] = listed
    frame.index.name = "model"
    frame.attrs["notes"] = notes
    return frame

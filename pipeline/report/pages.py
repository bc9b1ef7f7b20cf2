"""The report's two pages from one outline: ``report.md`` and ``report.html``.

Both pages are jinja2 templates of this package (``templates/``, loaded with
:class:`jinja2.PackageLoader`, so they are found wherever salpipe is installed). The
HTML page autoescapes every value and inlines ``report.css``, so it is one file that
works opened from disk, its figures the PNGs beside it; Markdown tables are drawn by
``tabulate`` (GitHub's pipe format).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache

import jinja2
import pandas as pd
from tabulate import tabulate

PAPER_MARK = " · paper"  # suffix of a column quoting the published number
DEVIATIONS = "declared deviations"


@dataclass(frozen=True)
class Section:
    """One ``##`` section: its title and its ``(subtitle, table)`` pairs ("" for none)."""

    title: str
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)


@dataclass(frozen=True)
class Outline:
    """Everything the two pages show, in order.

    Args:
        n_rows, n_models: result rows and models read (the pages' first line).
        sections: the table sections.
        figures: PNG names (beside the pages) under ``Figures``.
        galleries: saliency gallery PNG names under ``Saliency galleries``.
    """

    n_rows: int
    n_models: int
    sections: list[Section]
    figures: list[str]
    galleries: list[str]


def cell_text(value) -> str:
    """A table value as text: missing numbers are blank, everything else ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def notes(frame: pd.DataFrame) -> list[str]:
    """The notes on a table's published numbers (``attrs["notes"]``: "¹ text", ...)."""
    return list(getattr(frame, "attrs", {}).get("notes") or [])


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` (its index as the first column) as a GitHub Markdown table; ``_none_``
    for an empty one. A ``|`` inside a cell is escaped, so it never splits the cell."""
    if frame.empty:
        return "_none_"

    def text(v) -> str:
        return cell_text(v).replace("|", "\\|").replace("\n", " ")

    headers = [text(frame.index.name)] + [text(c) for c in frame.columns]
    rows = [[text(i)] + [text(v) for v in r]
            for i, r in zip(frame.index, frame.itertuples(index=False))]
    # disable_numparse: "60.00" stays "60.00" (tabulate would print 60)
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def html_table(frame: pd.DataFrame) -> dict:
    """What the HTML template draws of ``frame``: the index header, each column's name
    and CSS class (``paper`` for a published number, ``deviations``), and the rows."""
    def kind(c: str) -> str:
        return "paper" if c.endswith(PAPER_MARK) else "deviations" if c == DEVIATIONS else ""

    columns = [{"name": cell_text(c), "cls": kind(str(c))} for c in frame.columns]
    rows = [(cell_text(i), [cell_text(v) for v in r])
            for i, r in zip(frame.index, frame.itertuples(index=False))]
    return {"index": cell_text(frame.index.name), "columns": columns, "rows": rows,
            "empty": frame.empty}


@cache
def _environment() -> jinja2.Environment:
    # autoescape for .html only: the Markdown page must keep its text as it is
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(markdown_table=markdown_table, html_table=html_table, notes=notes)
    return env


def render_markdown(outline: Outline) -> str:
    """``report.md``: the outline's sections, Markdown tables by :func:`markdown_table`."""
    return _environment().get_template("report.md").render(o=outline)


def render_html(outline: Outline) -> str:
    """``report.html``: one self-contained page (stylesheet inlined, values escaped)."""
    return _environment().get_template("report.html").render(o=outline)

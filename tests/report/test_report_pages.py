"""The report's pages come from the package's jinja2 templates: the HTML escapes every
value and is one file (stylesheet inlined, figures beside it); Markdown tables are
tabulate's, a ``|`` in a cell never splitting it."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pandas as pd
from test_report_safety import results_table

from pipeline.report.pages import markdown_table
from pipeline.stages.report import run_report


def _hostile_results(tmp_path):
    """A results table whose flag text holds HTML and a Markdown pipe."""
    path = results_table(tmp_path / "r.parquet")
    df = pd.read_parquet(path)
    df.loc[df["attack"] == "pgd5", "flags"] = json.dumps(
        ["<script>alert(1)</script> & a|b"])
    df.to_parquet(path)
    return path


def test_html_escapes_values_and_is_self_contained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # templates come from the package, not the working dir
    rep = tmp_path / "rep"
    run_report([_hostile_results(tmp_path)], rep)
    page = (rep / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a|b" in page
    # one file: the stylesheet is inlined, nothing is fetched from elsewhere
    css = (files("pipeline.report") / "templates" / "report.css").read_text()
    assert "<style>" in page and css.strip() in page
    assert "<link" not in page and not re.search(r"(src|href)=\"(https?:|/)", page)
    figures = re.findall(r'<img src="([^"]+)"', page)
    assert figures and all((rep / f).is_file() for f in figures)  # PNGs beside the page
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


def test_markdown_tables_keep_cells_whole_and_numbers_as_written(tmp_path):
    rep = tmp_path / "rep"
    run_report([_hostile_results(tmp_path)], rep)
    md = (rep / "report.md").read_text()
    assert md.startswith("# salpipe evaluation report\n")  # what marks an old report
    flag_rows = [ln for ln in md.splitlines() if "alert(1)" in ln and ln.startswith("|")]
    assert flag_rows and all("a\\|b" in ln for ln in flag_rows)
    # the same flag beside its cell: a mark in the cell, its text in the notes below
    assert "- ⚑1 <script>alert(1)</script> & a|b" in md.splitlines()
    assert any(ln.startswith("|") and "⚑1" in ln for ln in md.splitlines())
    header = next(ln for ln in md.splitlines() if ln.startswith("|") and "flag" in ln)
    pipes = header.count("|")
    assert all(len(re.findall(r"(?<!\\)\|", ln)) == pipes for ln in flag_rows)
    t = pd.DataFrame({"clean": ["60.00"], "8/255": ["1.50 ± 0.25 (n=2)"]}, index=["std"])
    text = markdown_table(t)
    assert "| std " in text and "60.00" in text and "1.50 ± 0.25 (n=2)" in text
    assert markdown_table(pd.DataFrame()) == "_none_"


def test_two_runs_write_the_same_pages(tmp_path):
    """The fault tests compare reports byte for byte: nothing in a page may vary."""
    res = results_table(tmp_path / "r.parquet")
    run_report([res], tmp_path / "a")
    run_report([res], tmp_path / "b")
    for name in ("report.md", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

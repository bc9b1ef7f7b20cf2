"""``salpipe report --benchmarks DIR``: Snakemake benchmark files become a cost table per
rule; a missing or empty folder adds none, a malformed file is one error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report_safety import results_table

from pipeline.report.benchmarks import cost_per_rule, read_benchmarks
from pipeline.stages.report import run_report

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
TITLE = "Snakemake jobs per rule"


def _row(s, rss, cpu) -> str:
    return f"{s}\t0:00:01\t{rss}\t900.0\t100.0\t110.0\t1.00\t2.00\t95.00\t{cpu}"


def _write(path: Path, *rows: str, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture
def bench(tmp_path) -> Path:
    """Two rules: train_student (three jobs, one of two repeats, nested paths) and
    evaluate (one job too short to sample: NA and - everywhere but ``s``)."""
    d = tmp_path / "benchmarks"
    _write(d / "train_student" / "shapes" / "standard" / "seed0.tsv", _row(10.0, 500.5, 9.0))
    _write(d / "train_student" / "shapes" / "sat_gbp" / "seed0.tsv",
           _row(40.0, 700.0, 30.0), _row(60.0, 812.25, 50.0))  # two repeats
    # Snakemake's extended format: more columns after cpu_time, ignored
    _write(d / "train_student" / "shapes" / "pgd_at" / "seed0.tsv",
           _row(20.0, "NA", "-") + "\t7\ttrain_student\t{}\t{}\t2\t95\t{}\t1.0",
           header=HEADER + "\tjobid\trule_name\twildcards\tparams\tthreads\tcpu_usage"
                           "\tresources\tinput_size_mb")
    _write(d / "evaluate" / "shapes_standard_seed0.tsv", "0.4\t0:00:00" + "\tNA" * 6
           + "\t-\tNA")
    (d / "evaluate" / "notes.txt").write_text("not a benchmark: ignored")
    return d


def test_cost_per_rule_sums_jobs_and_keeps_the_peak_and_the_slowest(bench):
    jobs = read_benchmarks(bench)
    assert sorted(jobs["rule"]) == ["evaluate"] + ["train_student"] * 3
    sat = jobs[jobs["job"] == "shapes/sat_gbp/seed0"].iloc[0]
    assert sat["repeats"] == 2 and sat["s"] == 50.0 and sat["cpu_time"] == 40.0
    assert sat["max_rss"] == 812.25  # the largest repeat, never their mean
    t = cost_per_rule(jobs)
    assert list(t.columns) == ["jobs", "wall s (total)", "CPU s (total)",
                               "peak max_rss (MB)", "slowest job"]
    assert t.loc["train_student"].to_dict() == {
        "jobs": "3", "wall s (total)": "80.0",  # 10 + mean(40, 60) + 20
        "CPU s (total)": "49.0",  # the unsampled job (-) is left out, not counted as 0
        "peak max_rss (MB)": "812.2", "slowest job": "shapes/sat_gbp/seed0 (50.0 s)"}
    assert t.loc["evaluate"].to_dict() == {
        "jobs": "1", "wall s (total)": "0.4", "CPU s (total)": "NA",
        "peak max_rss (MB)": "NA", "slowest job": "shapes_standard_seed0 (0.4 s)"}


def test_the_cost_section_shows_the_table_in_both_pages(tmp_path, bench):
    rep = tmp_path / "rep"
    run_report([results_table(tmp_path / "r.parquet")], rep, benchmarks=bench)
    md, page = (rep / "report.md").read_text(), (rep / "report.html").read_text()
    for text in (md, page):
        assert TITLE in text and "peak max_rss (MB)" in text
        assert "shapes/sat_gbp/seed0 (50.0 s)" in text
    row = next(ln for ln in md.splitlines() if ln.startswith("| train_student"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "train_student", "3", "80.0", "49.0", "812.2", "shapes/sat_gbp/seed0 (50.0 s)"]
    assert json.loads((rep / "report.json").read_text())["benchmarks"] == str(bench)


@pytest.mark.parametrize("kind", ["missing", "empty", "only_other_files"])
def test_no_benchmark_files_means_no_table_and_no_error(tmp_path, kind):
    d = tmp_path / "benchmarks"
    if kind != "missing":
        (d / "train_student").mkdir(parents=True)
    if kind == "only_other_files":
        (d / "train_student" / "x.jsonl").write_text("{}\n")
        _write(d / "stray.tsv", _row(1.0, 1.0, 1.0))  # not under a rule's folder
    rep = tmp_path / "rep"
    run_report([results_table(tmp_path / "r.parquet")], rep, benchmarks=d)
    assert TITLE not in (rep / "report.md").read_text()
    assert TITLE not in (rep / "report.html").read_text()


@pytest.mark.parametrize("content, words", [
    ("", "is empty"),
    (b"\xff\xfe\x00binary", "is not a Snakemake benchmark table"),
    (HEADER + "\n", "holds a header but no row"),
    ("s,h:m:s,max_rss,cpu_time\n1,0:00:01,2,3\n", "no column(s) s, cpu_time, max_rss"),
    (HEADER + "\n" + _row("fast", 1.0, 1.0) + "\n", "line 2, column 's' is 'fast'"),
    (HEADER + "\n" + _row(1.0, 1.0, 1.0) + "\n" + _row(1.0, "12 MB", 1.0) + "\n",
     "line 3, column 'max_rss' is '12 MB'"),
    (HEADER + "\n1.0\t0:00:01\t5.0\n", "line 2 has 3 fields, its header 10"),
    (HEADER + "\n" + _row(1.0, 1.0, 1.0) + "\textra\tfields\n", "line 2 has 12 fields"),
    (HEADER + "\n" + _row(-1.0, 1.0, 1.0) + "\n", "negative"),
    (HEADER + "\ts\n" + _row(1.0, 1.0, 1.0) + "\t1.0\n", "a column named twice"),
])
def test_a_malformed_file_is_one_error_naming_it_before_anything_is_written(
        tmp_path, bench, content, words):
    bad = bench / "precompute_saliency" / "shapes" / "bad.tsv"
    bad.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    res, rep = results_table(tmp_path / "r.parquet"), tmp_path / "rep"
    with pytest.raises(ValueError, match=f"benchmark file {bad}") as e:
        run_report([res], rep, benchmarks=bench)
    assert words in str(e.value)
    assert not rep.exists()
    from cli import main

    out = CliRunner().invoke(main, ["report", "--results", str(res), "--benchmarks",
                                    str(bench), "--out", str(rep)])
    assert out.exit_code == 1 and out.output.startswith(f"Error: benchmark file {bad}")
    assert out.output.count("\n") == 1 and not rep.exists()


def test_a_file_given_as_the_folder_is_refused(tmp_path):
    f = tmp_path / "bench.tsv"
    f.write_text(HEADER + "\n" + _row(1.0, 1.0, 1.0) + "\n")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        run_report([results_table(tmp_path / "r.parquet")], tmp_path / "rep", benchmarks=f)
    assert not (tmp_path / "rep").exists()

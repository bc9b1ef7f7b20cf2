"""`salpipe publish`: a sweep folder's evidence (report, results, benchmarks, settings)
copied into a folder to commit; hand-written files there are kept, bad inputs named."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from pipeline.evaluate.table import COLUMNS, write_results
from pipeline.stages.publish import run_publish

BENCH = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _table(model: str, accs: list[float]) -> pd.DataFrame:
    rows = []
    for i, acc in enumerate(accs):
        row = {c: "" for c in COLUMNS}
        row.update(dataset="toy", split="test", model=model, seed=0, model_sha256=model,
                   preset="quick", eval_seed=0, n=10, attack="clean" if i == 0 else "pgd5",
                   eps=float(i) / 255, metric="accuracy", value=acc, accuracy=acc,
                   seconds=1.0, flags="[]", steps=5.0, restarts=1.0)
        rows.append(row)
    return pd.DataFrame(rows)[COLUMNS]


@pytest.fixture
def sweep(tmp_path):
    d = tmp_path / "data" / "toy_sweep"
    for model, accs in (("standard/seed0", [0.9, 0.5]), ("sat/seed0", [0.8, 0.6, 0.4])):
        write_results(_table(model, accs), d / "results" / "toy" / model / "quick.parquet")
    for job, secs in (("train_student/toy/sat/seed0", "12.5"), ("evaluate/toy/sat/seed0.quick",
                                                                  "3.0")):
        p = d / "benchmarks" / f"{job}.tsv"
        p.parent.mkdir(parents=True)
        p.write_text(BENCH + f"{secs}\t0:00:12\t900.5\t1\t1\t1\t0\t0\t90\t11.0\n")
    report = d / "report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    (report / "curves.png").write_bytes(b"\x89PNG")
    (report / "report.json").write_text(json.dumps({"kind": "salpipe report"}))
    (report / ".snakemake_timestamp").write_text("")  # a directory output's marker
    (d / "comparisons.json").write_text("{}\n")
    return d


def test_publish_writes_the_evidence_and_keeps_what_it_did_not_write(sweep, tmp_path):
    out = tmp_path / "docs" / "results" / "toy_sweep"
    out.mkdir(parents=True)
    (out / "README.md").write_text("hand-written\n")
    summary = run_publish(sweep, out)
    assert summary["files"] == ["benchmarks.csv", "comparisons.json", "curves.png",
                                "report.md", "results.csv"]
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 5 and list(df.columns) == COLUMNS
    assert list(df["model"]) == ["sat/seed0"] * 3 + ["standard/seed0"] * 2  # sorted
    jobs = pd.read_csv(out / "benchmarks.csv")
    assert list(jobs["job"]) == ["evaluate/toy/sat/seed0.quick", "train_student/toy/sat/seed0"]
    assert jobs["s"].tolist() == [3.0, 12.5] and jobs["max_rss"].tolist() == [900.5] * 2
    assert not (out / "report.json").exists()  # the report's marker names local paths
    assert (out / "README.md").read_text() == "hand-written\n"
    marker = json.loads((out / "publish.json").read_text())
    assert marker["sweep"] == "toy_sweep" and marker["results_rows"] == 5

    # a figure the next report no longer draws goes; a file no publish wrote stays
    (sweep / "report" / "curves.png").unlink()
    (out / "notes.txt").write_text("mine\n")
    run_publish(sweep, out)
    assert not (out / "curves.png").exists()
    assert (out / "notes.txt").exists() and (out / "README.md").exists()


def test_bad_inputs_are_named_and_nothing_is_written(sweep, tmp_path):
    out = tmp_path / "pub"
    with pytest.raises(FileNotFoundError, match="sweep folder .*nope not found"):
        run_publish(tmp_path / "nope", out)
    (sweep / "report" / "report.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"report is not a salpipe report"):
        run_publish(sweep, out)
    assert not out.exists()
    (sweep / "results" / "toy" / "sat" / "seed0" / "quick.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="quick.parquet exists but is not a Parquet"):
        run_publish(sweep, out, report_dir=sweep)
    for p in (sweep / "results").rglob("*.parquet"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="no results table"):
        run_publish(sweep, out)
    assert not out.exists()


def test_cli_publish(sweep, tmp_path):
    out = tmp_path / "pub"
    res = CliRunner().invoke(main, ["publish", "--sweep-dir", str(sweep), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "published 5 files" in res.output and "5 result rows, 2 jobs" in res.output
    res = CliRunner().invoke(main, ["publish", "--sweep-dir", str(tmp_path / "x"),
                                    "--out", str(out)])
    assert res.exit_code != 0 and "sweep folder" in res.output

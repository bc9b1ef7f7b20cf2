"""``salpipe report`` never deletes a folder it did not make, and refuses bad results
tables with one clear error each (issue: every bad input a clear error, nothing lost)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.report.render import MARKER
from pipeline.stages.report import run_report


def results_table(path: Path, dataset: str = "cifar10", value: float = 0.8) -> Path:
    """A small results table (two methods, clean + PGD-5 at two budgets)."""
    rows = []
    for method in ("standard", "pgd_at"):
        base = {"dataset": dataset, "split": "test", "arch": "resnet10", "method": method,
                "params": "{}", "teacher": "", "saliency_sources": "[]", "seed": 0,
                "model": f"{method}_0", "model_sha256": method, "preset": "quick",
                "n": 100, "flags": "[]", "attack_params": "{}", "view": ""}
        rows.append({**base, "attack": "clean", "eps": 0.0, "metric": "accuracy",
                     "value": value})
        for k in (1, 2):
            rows.append({**base, "attack": "pgd5", "eps": k / 255, "metric": "accuracy",
                         "value": value - 0.1 * k})
    pd.DataFrame(rows).to_parquet(path)
    return path


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` -> its bytes (None for a folder)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(Path(root) / d, folder)] = None
        for f in files:
            out[os.path.relpath(Path(root) / f, folder)] = (Path(root) / f).read_bytes()
    return out


def _trained_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(os.urandom(256))
    (folder / "model.json").write_text(json.dumps({"arch": "resnet10", "method": "standard"}))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "epoch_seconds": 1.0}))
    (folder / "config.yaml").write_text("epochs: 1\n")
    (folder / "logs").mkdir()
    (folder / "logs" / "train.log").write_text("epoch 0\n")
    return folder


def test_a_foreign_folder_is_refused_and_left_byte_identical(tmp_path):
    res = results_table(tmp_path / "r.parquet")
    run = _trained_run(tmp_path / "runs" / "std_copy")
    before = snapshot(run)
    with pytest.raises(FileExistsError, match="std_copy") as e:
        run_report([res], run)
    msg = str(e.value)
    for name in ("model.pt", "model.json", "metrics.jsonl", "config.yaml"):
        assert name in msg, msg
    assert snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["std_copy"]  # no temp folder


def test_cli_refuses_a_trained_run_as_out(tmp_path):
    from cli import main

    res = results_table(tmp_path / "r.parquet")
    run = _trained_run(tmp_path / "runs" / "std_copy")
    before = snapshot(run)
    out = CliRunner().invoke(main, ["report", "--results", str(res), "--out", str(run)])
    assert out.exit_code == 1, out.output
    assert out.output.startswith("Error: report folder") and "model.pt" in out.output
    assert snapshot(run) == before


def test_an_earlier_report_is_replaced(tmp_path):
    rep = tmp_path / "rep"
    first = run_report([results_table(tmp_path / "a.parquet", dataset="cifar10")], rep)
    marker = json.loads((rep / MARKER).read_text())
    assert marker["kind"] == "salpipe report" and marker["command"] == "salpipe report"
    assert marker["results"] == [str(tmp_path / "a.parquet")]
    assert set(marker["files"]) == {p.name for p in rep.iterdir()} - {MARKER}
    assert "curves_cifar10_resnet10_pgd5.png" in marker["files"]
    # the next report (another data set) replaces the whole folder: no stale figure
    run_report([results_table(tmp_path / "b.parquet", dataset="flowers17")], rep)
    names = {p.name for p in rep.iterdir()}
    assert "curves_flowers17_resnet10_pgd5.png" in names
    assert "curves_cifar10_resnet10_pgd5.png" not in names
    assert json.loads((rep / MARKER).read_text())["results"] == [str(tmp_path / "b.parquet")]
    assert "flowers17" in (rep / "report.md").read_text()
    assert first["out"] == str(rep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet", "rep"]


def test_a_report_with_files_added_is_refused(tmp_path):
    res = results_table(tmp_path / "r.parquet")
    rep = tmp_path / "rep"
    run_report([res], rep)
    (rep / "my_notes.txt").write_text("do not lose me")
    before = snapshot(rep)
    with pytest.raises(FileExistsError, match="my_notes.txt"):
        run_report([res], rep)
    assert snapshot(rep) == before
    # a marker that is not a salpipe report's does not make a folder a report
    (rep / "my_notes.txt").unlink()
    (rep / MARKER).write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(FileExistsError, match="not a salpipe report"):
        run_report([res], rep)


def test_an_unmarked_earlier_report_is_replaced(tmp_path):
    """Reports written before the marker: report.md / report.html and PNGs only."""
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.md").write_text("# salpipe evaluation report\n")
    (rep / "report.html").write_text("<html></html>")
    (rep / "curves_old.png").write_bytes(b"\x89PNG")
    run_report([results_table(tmp_path / "r.parquet")], rep)
    assert (rep / MARKER).is_file() and not (rep / "curves_old.png").exists()


def test_missing_or_empty_out_is_fine_and_a_file_is_refused(tmp_path):
    res = results_table(tmp_path / "r.parquet")
    run_report([res], tmp_path / "a" / "b" / "rep")
    assert (tmp_path / "a" / "b" / "rep" / "report.md").is_file()
    (tmp_path / "empty").mkdir()
    run_report([res], tmp_path / "empty")
    assert (tmp_path / "empty" / MARKER).is_file()
    (tmp_path / "file").write_text("keep")
    with pytest.raises(FileExistsError, match="is a file"):
        run_report([res], tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("kind, error, words", [
    ("missing", FileNotFoundError, "not found"),
    ("empty", ValueError, "holds no rows"),
    ("not_parquet", ValueError, "is not a Parquet file"),
    ("folder", ValueError, "is a folder"),
    ("other_table", ValueError, "not a salpipe results table"),
])
def test_bad_results_tables_are_one_clear_error_each(tmp_path, kind, error, words):
    good = results_table(tmp_path / "good.parquet")
    bad = tmp_path / "bad.parquet"
    if kind == "empty":
        pd.read_parquet(good).iloc[:0].to_parquet(bad)
    elif kind == "not_parquet":
        bad.write_text("dataset,method\ncifar10,standard\n")
    elif kind == "folder":
        bad.mkdir()
    elif kind == "other_table":
        pd.DataFrame({"a": [1]}).to_parquet(bad)
    rep = tmp_path / "rep"
    with pytest.raises(error, match=f"results table {bad}") as e:
        run_report([good, bad], rep)
    assert words in str(e.value)
    assert not rep.exists()
    from cli import main

    out = CliRunner().invoke(main, ["report", "--results", str(good), str(bad),
                                    "--out", str(rep)])
    assert out.exit_code == 1 and out.output.startswith("Error: results table"), out.output
    assert out.output.count("\n") == 1 and words in out.output
    assert not rep.exists()


def test_missing_run_or_gallery_is_refused_before_writing(tmp_path):
    res = results_table(tmp_path / "r.parquet")
    with pytest.raises(FileNotFoundError, match="no_run"):
        run_report([res], tmp_path / "rep", runs=[tmp_path / "no_run"])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        run_report([res], tmp_path / "rep", galleries=[tmp_path / "nope.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]

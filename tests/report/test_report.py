"""The report built from a fixture results table names every method and attack of it."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.stages.report import run_report


def _fixture_results(path):
    rows = []
    for method, sources in [("standard", []), ("pgd_at", []), ("sat", ["resnet10_adv.gbp"])]:
        for seed in (0, 1):
            # ResNet-34: paper 000's students, so its Table 1 is quoted beside them
            base = {"dataset": "cifar10", "split": "test", "arch": "resnet34", "method": method,
                    "params": "{}", "teacher": "", "saliency_sources": json.dumps(sources),
                    "seed": seed, "model": f"{method}_{seed}", "n": 100, "flags": "[]",
                    "steps": 5.0, "restarts": 1.0, "seconds": 1.0}
            rows.append({**base, "attack": "clean", "eps": 0.0, "metric": "accuracy",
                         "value": 0.8 + 0.01 * seed})
            for k in (1, 2, 3, 4):
                rows.append({**base, "attack": "pgd5", "eps": k / 255, "metric": "accuracy",
                             "value": 0.8 - 0.1 * k})
            rows.append({**base, "attack": "aai", "eps": 8 / 255, "metric": "kendall_tau",
                         "value": 0.5})
            rows.append({**base, "attack": "autoattack", "eps": 8 / 255, "metric": "accuracy",
                         "value": 0.1, "flags": json.dumps(["autoattack: it seems to be a dynamic defense!"])})
    # a second parameter setting of pgd_at gets its own row
    extra = [{**r, "params": json.dumps({"eps": "4/255"}), "model": "pgd_at_eps4"}
             for r in rows if r["method"] == "pgd_at" and r["seed"] == 0]
    pd.DataFrame(rows + extra).to_parquet(path)
    return path


def test_report_contains_every_method_and_attack(tmp_path):
    res = _fixture_results(tmp_path / "r.parquet")
    run = tmp_path / "runs" / "pgd_at_0"
    run.mkdir(parents=True)
    (run / "model.json").write_text(json.dumps({"method": "pgd_at"}))
    (run / "metrics.jsonl").write_text("\n".join(
        json.dumps({"epoch": e, "epoch_seconds": 10 + e}) for e in range(3)))
    summary = run_report([res], tmp_path / "report", runs=[run])
    md = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    for text in (md, page):
        for name in ("standard", "pgd_at (eps=None)", "pgd_at (eps=4/255)", "sat [resnet10_adv.gbp]", "test: pgd5",
                     "autoattack 8/255", "1/255", "4/255", "kendall_tau",
                     "dynamic defense"):
            assert name in text, name
    # clean accuracy, mean +- std [95 % t-interval] over the two seeds
    assert "80.50 ± 0.71 [74.1, 86.9]" in md
    assert "47.71" in md  # paper 000 Table 1, 'Original' at PGD-5 1/255, beside ours
    assert "training cost" in md.lower() and (tmp_path / "report" / "training_cost.png").is_file()
    assert (tmp_path / "report" / "curves_cifar10_resnet34_pgd5.png").is_file()
    assert summary["flags"] == 7  # one per model that raised it


def test_missing_results_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        run_report([tmp_path / "nope.parquet"], tmp_path / "out")


def test_report_draws_a_gallery_per_cached_source(tmp_path):
    """--gallery-store/--gallery-source: one PNG per source, shown in the report."""
    from pipeline.stages.precompute_saliency import PrecomputeConfig, run_precompute

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))
    from toy_files import make_checkpoint, make_store

    store = make_store(tmp_path / "toy.zarr", n=8)
    ckpt = make_checkpoint(tmp_path / "toy_teacher")
    run_precompute(store, PrecomputeConfig(split="test", teacher=ckpt, method="grad",
                                           batch_size=8))
    res = _fixture_results(tmp_path / "r.parquet")
    run_report([res], tmp_path / "rep", gallery_store=store,
               gallery_sources=["toy_teacher.grad"], gallery_n=4)
    png = tmp_path / "rep" / "gallery_toy_teacher_grad.png"
    assert png.is_file() and png.name in (tmp_path / "rep" / "report.md").read_text()


def test_tables_take_clean_accuracy_from_the_same_evaluation():
    from pipeline.report.tables import accuracy_tables

    base = {"dataset": "cifar10", "split": "test", "arch": "resnet10", "method": "standard",
            "params": "{}", "saliency_sources": "[]", "seed": 0, "model": "m",
            "model_sha256": "s", "metric": "accuracy", "flags": "[]", "attack_params": "{}"}
    rows = [{**base, "preset": "quick", "n": 500, "attack": "clean", "eps": 0.0, "value": 0.6},
            {**base, "preset": "quick", "n": 500, "attack": "pgd5", "eps": 1 / 255, "value": 0.4},
            {**base, "preset": "sip", "n": 20, "attack": "clean", "eps": 0.0, "value": 0.5},
            {**base, "preset": "sip", "n": 20, "attack": "autoattack", "eps": 1 / 255,
             "value": 0.3}]
    tables = accuracy_tables(pd.DataFrame(rows), paper=pd.DataFrame(
        columns=["paper", "table", "dataset", "method", "variant", "attack", "eps", "value"]))
    quick = tables["cifar10 / resnet10 / test: single-budget attacks, preset quick (n = 500)"]
    assert quick.loc["standard", "clean"] == "60.00"
    aa = tables["cifar10 / resnet10 / test: single-budget attacks, preset sip (n = 20)"]
    assert aa.loc["standard", "clean"] == "50.00"
    assert aa.loc["standard", "autoattack 1/255"] == "30.00"


def test_every_view_of_a_defence_shows_its_clean_accuracy():
    """SAD is scored in several views; the clean forward pass is the same in each, so
    every view's row (and the worst case over views, ``all``) carries the clean cell."""
    from pipeline.report.tables import accuracy_tables

    base = {"dataset": "cifar10", "split": "test", "arch": "resnet10", "method": "sad",
            "params": "{}", "teacher": "", "saliency_sources": "[]", "seed": 0,
            "model": "sad/seed0", "model_sha256": "ab", "n": 500, "metric": "accuracy",
            "flags": "[]", "preset": "pgd20", "attack_params": "{}"}
    rows = []
    for t, view in enumerate(("adaptive", "nonadaptive")):
        rows.append({**base, "view": view, "attack": "clean", "eps": 0.0, "value": 0.258,
                     "created": f"2026-01-0{t + 1}"})
        for k in (4, 8):
            rows.append({**base, "view": view, "attack": "pgd20", "eps": k / 255,
                         "value": (0.23 - 0.01 * k) if view == "adaptive" else 0.05,
                         "created": f"2026-01-0{t + 1}"})
    for k in (4, 8):
        rows.append({**base, "view": "all", "attack": "worst_case", "eps": k / 255,
                     "value": 0.04, "created": "2026-01-03",
                     "attack_params": json.dumps({"of": ["pgd20"]})})
    tables = accuracy_tables(pd.DataFrame(rows), paper=pd.DataFrame())
    pgd = next(t for name, t in tables.items() if name.endswith("pgd20 (n = 500)"))
    worst = next(t for name, t in tables.items() if "worst_case" in name)
    assert pgd.loc["sad <adaptive>", "clean"] == pgd.loc["sad <nonadaptive>", "clean"] == "25.80"
    assert pgd.loc["sad <adaptive>", "8/255"] == "15.00"
    assert worst.loc["sad <all>", "clean"] == "25.80"
    assert worst.loc["sad <all>", "8/255"] == "4.00"


def test_declared_deviations_sit_beside_the_rows_they_touch(tmp_path):
    """``--comparisons``: each student's declared deviations in a last column of its
    accuracy rows, and the settings table (with SAT's resolved alpha) in a section."""
    df = pd.read_parquet(_fixture_results(tmp_path / "r0.parquet"))
    df["model"] = df["method"] + "/seed" + df["seed"].astype(str)
    df.to_parquet(tmp_path / "r.parquet")
    comp = {"sweep": "t", "pairs": [],
            "settings": {"cifar10": {"standard": {"epochs": "4"},
                                     "sat": {"eps": "8/255", "alpha": "0.07776",
                                             "epochs": "4"}}},
            "deviations": {"sat": {"teacher": "the map is the variable"}}}
    (tmp_path / "comparisons.json").write_text(json.dumps(comp))
    run_report([tmp_path / "r.parquet"], tmp_path / "report",
               comparisons=tmp_path / "comparisons.json")
    md = (tmp_path / "report" / "report.md").read_text()
    sat_rows = [ln for ln in md.splitlines() if ln.startswith("| sat [resnet10_adv.gbp]")]
    assert sat_rows and all(ln.rstrip(" |").endswith("teacher: the map is the variable")
                            for ln in sat_rows)
    assert not any("the map is the variable" in ln for ln in md.splitlines()
                   if ln.startswith("| standard"))
    assert "Training settings and declared deviations" in md and "0.07776" in md
    marker = json.loads((tmp_path / "report" / "report.json").read_text())
    assert marker["comparisons"] == str(tmp_path / "comparisons.json")


def test_a_bad_comparisons_file_is_named(tmp_path):
    res = _fixture_results(tmp_path / "r.parquet")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"comparisons file .*c\.json is unreadable"):
        run_report([res], tmp_path / "report", comparisons=tmp_path / "c.json")
    with pytest.raises(FileNotFoundError, match=r"comparisons file .*missing\.json"):
        run_report([res], tmp_path / "report", comparisons=tmp_path / "missing.json")
    assert not (tmp_path / "report").exists()


def test_a_defence_leads_with_its_worst_case_over_every_view():
    from pipeline.report.render import defences_first

    t = pd.DataFrame({"8/255": ["1.0", "11.5", "2.5"]},
                     index=["sad <adaptive>", "sad <nonadaptive>", "sad <all>"])
    tables = {"cifar10 / resnet10 / test: pgd20 (n = 200)": t,
              "cifar10 / resnet10 / test: worst_case, preset defence (n = 200)": t}
    out = defences_first(tables)
    first = next(iter(out))
    assert "defences, worst case over every attack and view" in first
    assert list(out[first].index) == ["sad <all>"] and len(out) == 3


def test_training_cost_is_per_data_set_and_model_with_the_sd_over_runs(tmp_path):
    """One method on two data sets (or as two students) costs differently: each gets its
    own row, its runs' means averaged and their sd over runs beside them."""
    from pipeline.report.render import cost_per_row, read_training_cost

    runs = []
    for dataset, model, seed, secs in (("cifar10", "sip_at", 0, [20, 22]),
                                       ("cifar10", "sip_at", 1, [24, 26]),
                                       ("flowers17", "sip_at", 0, [5, 5]),
                                       ("flowers17", "sip_at_human", 0, [4, 6])):
        run = tmp_path / "runs" / dataset / "students" / model / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "model.json").write_text(json.dumps({"method": "sip_at"}))
        (run / "metrics.jsonl").write_text("\n".join(
            json.dumps({"epoch": e, "epoch_seconds": s}) for e, s in enumerate(secs)))
        runs.append(run)
    other = tmp_path / "pgd_at_0"  # not the sweep's layout: its method names the row
    other.mkdir()
    (other / "model.json").write_text(json.dumps({"method": "pgd_at"}))
    (other / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "epoch_seconds": 9}))
    table = cost_per_row(read_training_cost(runs + [other]))
    assert list(table.index) == ["cifar10/sip_at", "flowers17/sip_at",
                                 "flowers17/sip_at_human", "pgd_at"]
    row = table.loc["cifar10/sip_at"]
    assert row["s / epoch"] == 23.0 and row["runs"] == 2 and row["epochs"] == 4
    assert row["sd over runs"] == pytest.approx(2.83, abs=0.005)  # sd of 21 and 25
    assert table.loc["flowers17/sip_at", "s / epoch"] == 5.0
    assert math.isnan(table.loc["pgd_at", "sd over runs"])

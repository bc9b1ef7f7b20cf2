"""Uncertainty in the report: every cell's interval over seeds is scipy's t-interval,
the best-in-column mark appears only where intervals separate, and the curves put at
most six lines in a panel, grouped by method family."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.report.figures import MAX_LINES, family_panels, robustness_curves
from pipeline.report.tables import BEST_MARK, accuracy_tables, mark_best, seed_stats


def test_seed_stats_is_the_t_interval_over_seeds():
    v = [66.1, 68.3, 65.0]
    mean, sd, lo, hi, n = seed_stats(v)
    ci = stats.ttest_1samp(v, 0).confidence_interval(0.95)
    assert (mean, sd, n) == pytest.approx((np.mean(v), np.std(v, ddof=1), 3))
    assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert np.isnan(seed_stats([50.0])[2])


def test_best_is_marked_only_where_the_intervals_separate():
    frame = pd.DataFrame({"1/255": ["a", "b", "c"]}, index=["x", "y", "z"])
    far = {("x", "1/255"): seed_stats([60, 61, 62]), ("y", "1/255"): seed_stats([50, 51, 52]),
           ("z", "1/255"): seed_stats([40, 45, 50])}
    assert mark_best(frame, far) and frame.loc["x", "1/255"] == "a" + BEST_MARK
    frame = pd.DataFrame({"1/255": ["a", "b"]}, index=["x", "y"])
    near = {("x", "1/255"): seed_stats([60, 52, 62]), ("y", "1/255"): seed_stats([55, 56, 57])}
    assert not mark_best(frame, near) and BEST_MARK not in "".join(frame["1/255"])
    one_seed = {("x", "1/255"): seed_stats([90]), ("y", "1/255"): seed_stats([10])}
    assert not mark_best(frame, one_seed)


def _results(methods, seeds=(0, 1, 2)):
    rows = []
    rng = np.random.default_rng(0)
    for i, m in enumerate(methods):
        for s in seeds:
            base = {"dataset": "cifar10", "split": "test", "arch": "resnet10", "method": m,
                    "params": "{}", "saliency_sources": "[]", "seed": s,
                    "model": f"{m}_{i}/seed{s}", "model_sha256": f"{m}{i}{s}", "n": 100,
                    "preset": "p", "flags": "[]", "attack_params": "{}", "view": "",
                    "created": "2026"}
            rows.append({**base, "attack": "clean", "eps": 0.0, "metric": "accuracy",
                         "value": 0.9 - 0.01 * i + rng.normal(0, 0.01)})
            for k in (1, 2, 4):
                rows.append({**base, "attack": "pgd5", "eps": k / 255, "metric": "accuracy",
                             "value": max(0.0, 0.6 - 0.1 * k + rng.normal(0, 0.01))})
    return pd.DataFrame(rows)


def test_cells_carry_the_interval_and_the_table_notes_the_mark():
    res = _results(["standard", "pgd_at"])
    res.loc[res["method"] == "pgd_at", "value"] += 0.2  # far apart at every budget
    (table,) = [t for name, t in accuracy_tables(res).items() if "pgd5" in name]
    cell = table.loc["pgd_at", "1/255"]
    assert " ± " in cell and "[" in cell and cell.endswith(BEST_MARK)
    assert any(n.startswith("▲ best in its column") for n in table.attrs["notes"])


def test_panels_hold_at_most_six_lines_grouped_by_family(tmp_path):
    rows = {f"sat [{k}]": "sat" for k in range(8)}
    rows |= {"standard": "standard", "pgd_at": "pgd_at", "trades": "trades", "sad": "sad"}
    panels = family_panels(rows)
    assert all(len(labels) <= MAX_LINES for _, labels in panels)
    assert [t for t, _ in panels] == ["baselines", "SAT (1/2)", "SAT (2/2)",
                                      "PGD-AT family", "TRADES family", "SAD"]
    assert sorted(sum((labels for _, labels in panels), [])) == sorted(rows)
    methods = ["standard", "uniform_noise", "pgd_at", "pgd_sat", "sip_at", "fat", "part",
               "trades", "trades_sat"] + ["sat"] * 7
    (png,) = robustness_curves(_results(methods), tmp_path)
    assert png.name == "curves_cifar10_resnet10_pgd5.png" and png.stat().st_size > 10_000

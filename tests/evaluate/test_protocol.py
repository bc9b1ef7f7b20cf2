"""The evaluation protocol: batch-size independence, flags, worst case, results table."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from pipeline.evaluate import evaluate_robust, load_presets, read_results
from pipeline.evaluate.presets import AttackRun
from pipeline.evaluate.robust import sanity_checks
from pipeline.stages.evaluate import run_evaluate

RUNS = [
    AttackRun("pgd2", "pgd", 8 / 255, {"steps": 2}),
    AttackRun("noise", "uniform_noise", 8 / 255, {}),
    AttackRun("trades", "trades_kl", 4 / 255, {"steps": 2}),
    AttackRun("aai", "aai", 8 / 255, {"steps": 2}),
]


def _data(model, n=12):
    x = torch.rand(n, 3, 16, 16)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two points wrong from the start
    return x, y, torch.arange(100, 100 + n)


def test_batch_size_does_not_change_results(small_model):
    x, y, idx = _data(small_model)
    a = evaluate_robust(small_model, x, y, idx, RUNS, batch_size=5, seed=3)
    b = evaluate_robust(small_model, x, y, idx, RUNS, batch_size=12, seed=3)
    key = lambda rows: [(r["attack"], r["eps"], r["metric"], round(r["value"], 6)) for r in rows]
    assert key(a) == key(b)


def test_batch_size_independence_for_library_attacks(small_model):
    """Square draws per batch inside its library: run on fixed index blocks instead."""
    x, y, idx = _data(small_model)
    runs = [AttackRun("square", "square", 8 / 255, {"queries": 30})]
    rows = [evaluate_robust(small_model, x, y, idx, runs, batch_size=b, seed=1) for b in (3, 12)]
    assert [r["value"] for r in rows[0]] == [r["value"] for r in rows[1]]


def test_rows_clean_attacks_worst_case_and_metrics(small_model):
    x, y, idx = _data(small_model)
    rows = evaluate_robust(small_model, x, y, idx, RUNS, batch_size=6)
    acc = {(r["attack"], round(r["eps"] * 255)): r["value"] for r in rows if r["metric"] == "accuracy"}
    assert acc[("clean", 0)] == pytest.approx(10 / 12)
    assert acc[("worst_case", 8)] <= min(acc[("pgd2", 8)], acc[("noise", 8)])
    assert acc[("worst_case", 4)] == acc[("trades", 4)]
    of = {round(r["eps"] * 255): json.loads(r["attack_params"])["of"]
          for r in rows if r["attack"] == "worst_case"}
    assert of == {4: ["trades"], 8: ["pgd2", "noise"]}  # aai (metric attack) is not in it
    assert all(v <= acc[("clean", 0)] for v in acc.values())
    metrics = {r["metric"] for r in rows if r["attack"] == "aai"}
    assert {"kendall_tau", "kendall_tau_excluded"} <= metrics


class _Softmax(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x).softmax(1)


class _Noisy(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x + 0.05 * torch.randn_like(x))


class _Dynamic(torch.nn.Module):
    """Optimises at inference time (like SAD): a gradient step inside forward."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.m(xg).max(1).values.sum(), xg)
        return self.m(x + 0.01 * g.sign())


def test_sanity_flags(small_model):
    x, y, _ = _data(small_model, n=6)
    assert sanity_checks(small_model, x, y) == []
    assert any("probability" in f for f in sanity_checks(_Softmax(small_model), x, y))
    assert any("random" in f for f in sanity_checks(_Noisy(small_model), x, y))
    zero = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 10)).eval()
    torch.nn.init.zeros_(zero[1].weight)
    assert any("zero gradient" in f for f in sanity_checks(zero, x, y))
    assert any("dynamic defense" in f for f in sanity_checks(_Dynamic(small_model), x, y))
    assert sanity_checks(small_model, x, y) == []  # the library's counter was reset


def test_presets_file_loads_and_is_validated(tmp_path):
    presets = load_presets()
    assert {"quick", "sat", "sip", "sad", "int", "full"} <= set(presets)
    assert len(presets["full"]) >= len(presets["sat"]) + len(presets["sip"])
    assert sorted(round(r.eps * 255) for r in presets["quick"] if r.name == "pgd") == [1, 2, 3, 4]
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"presets": {"x": {"attacks": [
        {"attack": "pgd", "eps": "4/255", "params": {"stepz": 3}}]}}}))
    with pytest.raises(ValueError, match="stepz"):
        load_presets(bad)
    bad.write_text(yaml.safe_dump({"presets": {"x": {"attacks": [
        {"attack": "pgd", "eps": "4/255", "params": {"steps": 3}},
        {"attack": "pgd", "eps": "4/255", "params": {"steps": 5}}]}}}))
    with pytest.raises(ValueError, match="relabel"):
        load_presets(bad)


def test_run_evaluate_appends_and_is_a_noop_on_rerun(toy_store, toy_ckpt, tmp_path):
    out = tmp_path / "res" / "results.parquet"
    first = run_evaluate(toy_ckpt, toy_store, "test", "quick", out, "cpu", n=10)
    assert not first["skipped"]
    df = read_results(out)
    assert list(df["attack"].unique()) == ["clean", "pgd5", "worst_case"]
    assert (df["n"] == 10).all() and (df["method"] == "standard").all()
    assert (df["arch"] == "small_cnn").all() and (df["model"] == "small_std").all()
    json.loads(df["flags"].iloc[0])
    mtime = out.stat().st_mtime_ns
    again = run_evaluate(toy_ckpt, toy_store, "test", "quick", out, "cpu", n=10)
    assert again["skipped"] and out.stat().st_mtime_ns == mtime
    forced = run_evaluate(toy_ckpt, toy_store, "test", "quick", out, "cpu", n=10, force=True)
    assert not forced["skipped"]
    df2 = read_results(out)
    assert len(df2) == len(df)
    pd.testing.assert_series_equal(df2["value"], df["value"])
    run_evaluate(toy_ckpt, toy_store, "test", "quick", out, "cpu", n=8)  # another key: appended
    assert len(read_results(out)) == 2 * len(df)
    assert not list(out.parent.glob(".*tmp"))


def test_transfer_needs_source_model(toy_store, toy_ckpt, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"presets": {"t": {"attacks": [
        {"attack": "transfer", "eps": "8/255", "params": {"attack_params": {"steps": 2}}}]}}}))
    out = tmp_path / "r.parquet"
    run_evaluate(toy_ckpt, toy_store, "test", "t", out, "cpu", n=6, presets_file=p)
    df = read_results(out)
    assert "transfer" not in set(df["attack"]) and "no --source-model" in df["flags"].iloc[0]
    run_evaluate(toy_ckpt, toy_store, "test", "t", out, "cpu", n=6, presets_file=p,
                 source_model=toy_ckpt)
    assert "transfer" in set(read_results(out)["attack"])


def test_cli_evaluate_and_report(toy_store, toy_ckpt, tmp_path):
    from click.testing import CliRunner

    from cli import main

    out = tmp_path / "r.parquet"
    args = ["--device", "cpu", "evaluate", "--model", str(toy_ckpt), "--store", str(toy_store),
            "--preset", "quick", "--n", "6", "--out", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "nothing to do" in CliRunner().invoke(main, args).output
    res = CliRunner().invoke(main, ["report", "--results", str(out), str(out),
                                    "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "test: pgd5" in md and "4/255" in md

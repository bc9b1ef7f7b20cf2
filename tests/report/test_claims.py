"""Claims as data and their verdicts: the claims file agrees with the transcribed paper
tables and the sweeps, the seed-level test equals scipy's one-sample t-test, McNemar
equals its closed form, and verdicts follow the intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.config.sweep import load_sweep
from pipeline.core.budget import parse_budget
from pipeline.core.outcomes import encode_outcome
from pipeline.evaluate.presets import load_presets, select_preset
from pipeline.report.claims import (
    TRAINING,
    Claim,
    Part,
    combine,
    judge,
    load_claims,
    mcnemar,
    paired_test,
)
from pipeline.report.tables import load_paper_tables

CLAIMS = load_claims()


def test_the_claims_file_loads_with_every_paper_claim_the_issue_names():
    ids = {c.id for c in CLAIMS}
    assert {"sat_gbp_beats_original", "std_teacher_gbp_collapses", "pgd_sat_keeps_pgd_at",
            "trades_sat_beats_trades", "sat_mask_beats_original",
            "sat_bbox_beats_original", "sip_synthetic_keeps_clean", "sip_human_keeps_clean",
            "sad_beats_its_base", "at_sad_beats_its_base", "int_gains_robustness",
            "int2_gains_robustness", "int_aai_beats_standard", "int_aai_beats_pgd_at",
            "int2_aai_beats_standard", "int2_aai_beats_pgd_at"} <= ids
    # every claim of the four papers' sweeps
    assert {c.sweep for c in CLAIMS} == {"cpu_sat", "cpu_sip", "cpu_sad", "cpu_int"}


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_published_numbers_are_the_transcribed_tables(claim):
    paper = load_paper_tables()
    if not claim.published_rows:
        assert all(p.published == (None, None) for p in claim.parts)
        return
    for p in claim.parts:
        for row, value in zip(claim.published_rows, p.published):
            if value is None:
                continue
            got = paper[(paper["paper"] == claim.paper) & (paper["table"] == claim.table)
                        & (paper["dataset"] == (claim.published_dataset or claim.dataset))
                        & (paper["paper_method"] == row)
                        & (paper["attack"] == p.published_attack)]
            if claim.published_arch:
                got = got[got["arch"] == claim.published_arch]
            got = got[[str(e) != "" and abs(parse_budget(str(e)) - p.eps) < 1e-9
                       for e in got["eps"]]]
            assert got["value"].tolist() == [value], (claim.id, row, p.label())


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_each_claim_names_rows_and_attacks_its_sweep_has(claim):
    sweep = load_sweep(f"config/sweeps/{claim.sweep}.yaml")
    assert {claim.a, claim.b} <= set(sweep.students_for(claim.dataset)), claim.id
    assert claim.dataset in sweep.datasets
    # the claim reads the rows of the preset its sweep evaluates both rows with
    assert claim.preset == sweep.preset_for(claim.a) == sweep.preset_for(claim.b), claim.id
    runs = select_preset(load_presets(), claim.preset)
    labels = {r.label for r in runs}
    for p in claim.parts:
        assert p.attack in labels | {"clean", "worst_case", TRAINING}, (claim.id, p.attack)
        if p.attack not in ("clean", TRAINING, "worst_case"):
            budgets = {round(r.eps, 9) for r in runs if r.label == p.attack}
            assert round(p.eps, 9) in budgets, (claim.id, p.label())


def test_bad_claims_are_refused_naming_the_key(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("claims:\n  - {id: x, paper: p, table: t, sweep: s, dataset: d,"
                   " statement: s, a: a, b: b, parts: [{attack: clean, direction: bigger}]}\n")
    with pytest.raises(ValueError, match=r"direction: 'bigger' is not one of greater"):
        load_claims(bad)
    bad.write_text("claims:\n  - {id: x, paper: p, table: t, sweep: s, dataset: d,"
                   " statement: s, a: a, b: b, parts: [{attack: clean, direction: less,"
                   " margn: 2}]}\n")
    with pytest.raises(ValueError, match=r"unknown key 'margn' \(did you mean 'margin'"):
        load_claims(bad)


@pytest.mark.parametrize("diffs", [[1.0, 2.5, 0.5], [3.0, -1.0, 2.0, 0.5], [-4, -2.5, -3.3]])
def test_the_seed_level_test_is_scipys_one_sample_t_test(diffs):
    t = paired_test(np.array(diffs), "greater")
    ref = stats.ttest_1samp(diffs, 0.0)
    ci = ref.confidence_interval(0.95)
    assert t["p"] == pytest.approx(ref.pvalue)
    assert (t["lo"], t["hi"]) == pytest.approx((ci.low, ci.high))
    assert t["sd"] == pytest.approx(np.std(diffs, ddof=1))


@pytest.mark.parametrize("diffs, direction, margin, verdict", [
    ([2.0, 2.2, 1.9], "greater", 1, "holds"),
    ([-2.0, -2.2, -1.9], "greater", 1, "does not hold"),
    ([3.0, -2.0, 0.5], "greater", 1, "inconclusive"),
    ([-5.0, -4.0, -6.0], "less", 1, "holds"),
    ([0.1, -0.2, 0.3], "not_less", 1, "holds"),
    ([-3.0, -3.2, -2.9], "not_less", 1, "does not hold"),
    ([0.5, 0.2, 0.4], "not_greater", 1, "holds"),
    ([4.0], "greater", 1, "inconclusive"),
])
def test_verdicts_read_the_interval(diffs, direction, margin, verdict):
    assert paired_test(np.array(diffs), direction, margin)["verdict"] == verdict


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 0], bool)
    ab, ba, p = mcnemar(a, b)
    assert (ab, ba) == (5, 1)
    # two-sided exact: 2 * P(X <= 1), X ~ Bin(6, 1/2)
    assert p == pytest.approx(2 * (1 + 6) / 64)
    assert mcnemar(a, a)[2] == 1.0


def test_combine():
    assert combine(["holds", "holds"]) == "holds"
    assert combine(["holds", "does not hold"]) == "does not hold"
    assert combine(["holds", "inconclusive"]) == "inconclusive"


def _results(acc: dict, n=100, dataset="cifar10", attack="pgd20", eps=1 / 255):
    rows = []
    rng = np.random.default_rng(0)
    for (model, seed), value in acc.items():
        ok = np.zeros(n, bool)
        ok[rng.permutation(n)[:round(value * n)]] = True
        rows.append({"dataset": dataset, "model": f"{model}/seed{seed}", "seed": seed,
                     "attack": attack, "eps": eps, "metric": "accuracy", "value": value,
                     "n": n, "view": "", "created": "2026", "outcome": encode_outcome(ok)})
    return pd.DataFrame(rows)


def test_judge_pairs_seeds_and_leaves_out_claims_whose_rows_are_not_there(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(json.dumps({"claims": [
        {"id": "up", "paper": "000 X", "table": "Table 1", "sweep": "s", "dataset": "cifar10",
         "statement": "a beats b", "a": "a", "b": "b",
         "parts": [{"attack": "pgd20", "eps": "1/255", "direction": "greater",
                    "published": [60, 50]},
                   {"attack": TRAINING, "direction": "not_greater", "margin": 2}]},
        {"id": "elsewhere", "paper": "000 X", "table": "Table 2", "sweep": "s",
         "dataset": "flowers17", "statement": "", "a": "a", "b": "b",
         "parts": [{"attack": "pgd20", "eps": "1/255", "direction": "greater"}]}]}))
    res = _results({("a", 0): .50, ("a", 1): .55, ("a", 2): .52,
                    ("b", 0): .40, ("b", 1): .44, ("b", 2): .43, ("b", 3): .90})
    cost = pd.DataFrame({"dataset": "cifar10", "model": ["a"] * 3 + ["b"] * 3,
                         "seed": [0, 1, 2] * 2, "epoch_seconds": [10, 11, 10, 10, 10, 10.5]})
    verdicts, parts = judge(load_claims(f), res, cost)
    assert verdicts["claim"].tolist() == ["up"]
    acc = parts.iloc[0]
    assert acc["seeds"] == 3  # b's seed 3 has no partner
    assert acc["_mean"] == pytest.approx(10.0)
    assert acc["_published"] == pytest.approx(10.0)
    assert acc["verdict"] == "holds" and acc["McNemar (within seed)"].count("seed") == 3
    assert parts.iloc[1]["_mean"] == pytest.approx(np.mean([0, 1, -0.5]))
    assert verdicts.iloc[0]["verdict"] == combine(parts["verdict"].tolist())


def test_a_defence_is_judged_by_its_worst_case_over_views():
    res = pd.concat([_results({("sad", s): v for s, v in enumerate([.1, .12, .11])},
                              attack="worst_case"),
                     _results({("standard", s): v for s, v in enumerate([.3, .31, .29])},
                              attack="worst_case")])
    res.loc[res["model"].str.startswith("sad"), "view"] = "all"
    adaptive = res[res["model"].str.startswith("sad")].assign(view="adaptive", value=0.9)
    res = pd.concat([res, adaptive])
    c = Claim("d", "001 SAD", "Table 1", "s", "cifar10", "", "sad", "standard",
              (Part("worst_case", 1 / 255, "accuracy", "greater", 1.0, (None, None),
                    "worst_case"),))
    _, parts = judge([c], res)
    assert parts.iloc[0]["_mean"] == pytest.approx(-19.0)
    assert parts.iloc[0]["verdict"] == "does not hold"
    assert math.isnan(parts.iloc[0]["_published"])


def test_a_claim_with_a_preset_reads_only_that_presets_rows(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(json.dumps({"claims": [
        {"id": "wc", "paper": "001 X", "table": "Table 1", "sweep": "s", "dataset": "cifar10",
         "statement": "", "a": "a", "b": "b", "preset": "suite",
         "parts": [{"attack": "worst_case", "eps": "1/255", "direction": "greater"}]}]}))
    suite = _results({("a", 0): .3, ("a", 1): .31, ("b", 0): .2, ("b", 1): .22},
                     attack="worst_case").assign(preset="suite")
    # a weaker preset's worst case of b on more images: never read by this claim
    weak = _results({("b", 0): .6, ("b", 1): .61}, n=1000,
                    attack="worst_case").assign(preset="weak")
    _, parts = judge(load_claims(f), pd.concat([suite, weak]))
    assert parts.iloc[0]["_mean"] == pytest.approx(((.3 - .2) + (.31 - .22)) / 2 * 100)

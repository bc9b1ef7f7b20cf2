"""One report section per paper: the rows its claims compare, ours (mean ± sd [95 %
interval] over seeds) beside the published number, the paper's own attack beside its
number where the results hold it, and notes where the paper's number is of another
attack, architecture or data set."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.report.claims import load_claims
from pipeline.report.papers import paper_sections
from pipeline.report.tables import seed_stats


def _rows(values: dict, attack: str, eps: float, metric: str = "accuracy"):
    return [{"dataset": "cifar10", "model": f"{m}/seed{s}", "seed": s, "attack": attack,
             "eps": eps, "metric": metric, "value": v, "n": 100, "view": "",
             "created": "2026", "outcome": ""} for (m, s), v in values.items()]


@pytest.fixture
def claims(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(json.dumps({"claims": [
        {"id": "up", "paper": "000 X", "table": "Table 1", "sweep": "s", "dataset": "cifar10",
         "statement": "", "a": "a", "b": "b", "published_rows": ["A", "Orig"],
         "parts": [{"attack": "pgd20", "eps": "1/255", "direction": "greater",
                    "published": [60, 50], "published_attack": "pgd5"}]},
        {"id": "tau", "paper": "004 Y", "table": "Table 3", "sweep": "s", "dataset": "cifar10",
         "statement": "", "a": "a", "b": "b", "published_rows": ["A", "Orig"],
         "published_dataset": "rimagenet",
         "parts": [{"attack": "aai", "metric": "kendall_tau", "eps": "2/255",
                    "direction": "greater", "published": [0.988, 0.851]}]},
        {"id": "absent", "paper": "001 Z", "table": "Table 1", "sweep": "s",
         "dataset": "cifar10", "statement": "", "a": "a", "b": "nobody",
         "parts": [{"attack": "clean", "direction": "greater"}]}]}))
    return load_claims(f)


def test_each_paper_gets_a_section_with_ours_beside_the_published(claims):
    a20 = {("a", 0): .50, ("a", 1): .54, ("a", 2): .52}
    b20 = {("b", 0): .40, ("b", 1): .41, ("b", 2): .45}
    res = pd.DataFrame(
        _rows({**a20, **b20}, "pgd20", 1 / 255)
        + _rows({k: v + .01 for k, v in {**a20, **b20}.items()}, "pgd5", 1 / 255)
        + _rows({("a", 0): .9, ("a", 1): .92, ("b", 0): .7, ("b", 1): .72}, "aai", 2 / 255,
                "kendall_tau"))
    sections = paper_sections(claims, res)
    assert [s.title for s in sections] == ["Paper 000 X", "Paper 004 Y"]  # 001: no rows
    (title, t1), = sections[0].tables
    assert title == "Table 1, cifar10: ours beside the paper's"
    assert list(t1.index) == ["a (paper: A)", "b (paper: Orig)"]
    # the claim's attack (PGD-20), then the paper's own (PGD-5) with its number beside
    assert list(t1.columns) == ["pgd20 1/255", "pgd5 1/255", "pgd5 1/255 · paper"]
    mean, sd, lo, hi, _ = seed_stats(np.array([.50, .54, .52]) * 100)
    assert t1.loc["a (paper: A)", "pgd20 1/255"] == f"{mean:.1f} ± {sd:.1f} [{lo:.1f}, {hi:.1f}]"
    assert t1.loc["b (paper: Orig)", "pgd5 1/255 · paper"] == "50"
    (_, t3), = sections[1].tables
    assert t3.loc["a (paper: A)", "aai kendall_tau 2/255 · paper"] == "0.988"
    assert t3.loc["b (paper: Orig)", "aai kendall_tau 2/255"].startswith("0.710 ± 0.014")
    assert any("on rimagenet" in n for n in t3.attrs["notes"])


def test_the_paper_number_stays_beside_our_attack_when_its_own_is_not_run(claims):
    res = pd.DataFrame(_rows({("a", 0): .5, ("a", 1): .6, ("b", 0): .4, ("b", 1): .5},
                             "pgd20", 1 / 255))
    (_, t1), = paper_sections(claims[:1], res)[0].tables
    assert list(t1.columns) == ["pgd20 1/255", "pgd20 1/255 · paper"]
    assert t1.attrs["notes"] == ["pgd20 1/255 · paper: the paper's number is its pgd5"]


def test_a_rows_declared_deviations_stand_in_the_last_column(claims):
    res = pd.DataFrame(_rows({("a", 0): .5, ("a", 1): .6, ("b", 0): .4, ("b", 1): .5},
                             "pgd20", 1 / 255))
    (_, t1), = paper_sections(claims[:1], res,
                              deviations={"a": {"bn_mode": "train-mode BN"}})[0].tables
    assert t1.columns[-1] == "declared deviations"
    assert t1["declared deviations"].tolist() == ["bn_mode: train-mode BN", ""]


def test_clean_accuracy_leads_each_table_with_the_papers_own(claims):
    """As the papers' tables open with clean accuracy, so do ours: ours from the results'
    clean rows, the paper's from the transcribed tables (matched on paper, table, data
    set, row and architecture); a row the paper does not print gets none."""
    acc = {("a", 0): .5, ("a", 1): .6, ("b", 0): .4, ("b", 1): .5}
    res = pd.DataFrame(_rows(acc, "pgd20", 1 / 255)
                       + _rows({k: v + .3 for k, v in acc.items()}, "clean", 0.0))
    published = pd.DataFrame([
        {"paper": "000 X", "table": "Table 1", "dataset": "cifar10", "arch": "",
         "paper_method": "A", "attack": "clean", "value": 83.86},
        {"paper": "000 X", "table": "Table 2", "dataset": "cifar10", "arch": "",
         "paper_method": "Orig", "attack": "clean", "value": 99.0}])  # another table
    (_, t1), = paper_sections(claims[:1], res, published=published)[0].tables
    assert list(t1.columns) == ["clean", "clean · paper", "pgd20 1/255",
                                "pgd20 1/255 · paper"]
    assert t1.loc["a (paper: A)", "clean"].startswith("85.0 ± 7.1")
    assert t1["clean · paper"].tolist() == ["83.86", ""]
    # without clean results or a published clean number the column is left out
    (_, t1), = paper_sections(claims[:1], res[res["attack"] != "clean"],
                              published=published.iloc[:0])[0].tables
    assert "clean" not in t1.columns and "clean · paper" not in t1.columns


def test_the_package_tables_give_sads_published_clean_accuracy():
    """The default ``published`` is the transcribed tables: SAD's Table 1 (ResNet-18)
    prints 82.73 % clean for AT+SAD and 82.77 % for TRADES."""
    claims = {c.id: c for c in load_claims()}
    res = pd.DataFrame(
        _rows({(m, s): .5 for m in ("at_sad", "trades") for s in (0, 1)}, "clean", 0.0)
        + _rows({(m, s): .3 for m in ("at_sad", "trades") for s in (0, 1)},
                "worst_case", 4 / 255)
        + _rows({(m, s): .2 for m in ("at_sad", "trades") for s in (0, 1)},
                "worst_case", 8 / 255))
    res["preset"] = "defence_survivors"
    (section,) = paper_sections([claims["at_sad_beats_its_base"]], res)
    (_, t), = section.tables
    assert t["clean · paper"].tolist() == ["82.73", "82.77"]

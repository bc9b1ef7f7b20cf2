"""Published numbers (pipeline/resources/paper_tables) are matched like with like: data
set, architecture, method and variant; one number or none; notes where our attack differs;
every transcribed row parses, cites its paper and table, and every table has the rows
the paper's text shows."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pandas as pd
import pytest
import yaml

from pipeline.evaluate.presets import DEFAULT_PRESETS
from pipeline.report.tables import (
    PAPER_ARCHS,
    PAPER_COLUMNS,
    PAPER_TABLES,
    accuracy_tables,
    check_paper_tables,
    load_paper_tables,
    parse_variant,
    prepare_paper_tables,
)
from pipeline.stages.report import run_report

PRESETS = DEFAULT_PRESETS
# published names no salpipe entity stands for (never matched; the comment says so)
NOT_IN_SALPIPE = {"dataset": {"mnist", "rimagenet"},
                  "arch": {"DenseNet-121", "Small", "WResnet"},
                  "method": {"fast_at", "free_at", "ig_norm", "ig_norm_sum"}}
SAD_METHODS = {"sad", "at_sad", "sad_bn_only", "sad_saliency_only"}

# (paper, table) -> (data set, architecture, rows, columns) of each block, as the text
# copies in ../shared/papers print them (rows with an illegible cell included).
EXPECTED = {
    ("000", "Table 1"): [("cifar10", "ResNet-34", 26, 4), ("cifar100", "ResNet-34", 26, 4)],
    ("000", "Table 2"): [("tinyimagenet", "ResNet-34", 9, 3), ("flowers17", "ResNet-34", 9, 3)],
    ("000", "Table 3"): [("cifar100", "ResNet-34", 10, 4)],
    ("000", "Table 4"): [("cifar100", "ResNet-34", 10, 9)],
    ("000", "Table 5"): [("cifar100", "ResNet-34", 10, 8)],
    ("000", "Table 6"): [("cifar10", "ResNet-34", 16, 4)],
    ("000", "Table 7"): [("cifar10", "ResNet-34", 10, 4)],
    ("001", "Table 1"): [("cifar10", "ResNet-18", 5, 5), ("cifar10", "WRN-32-10", 5, 5)],
    ("001", "Table 2"): [("cifar100", "ResNet-50", 5, 5), ("cifar100", "WRN-32-10", 5, 5)],
    ("001", "Table 3"): [("cifar10", "ResNet-18", 3, 4), ("cifar100", "ResNet-50", 3, 4)],
    ("001", "Table 4"): [("cifar100", "WRN-32-10", 5, 2)],
    ("001", "Table 5"): [("cifar10", "ResNet-18", 5, 2)],
    ("002", "Table 1"): [("cifar10", "ResNet-18", 6, 5), ("cifar10", "WideResNet-34", 6, 5)],
    ("002", "Table 2"): [("cifar100", "ResNet-18", 6, 5), ("cifar100", "WideResNet-34", 6, 5)],
    ("002", "Table 3"): [("cub200", "ResNet-50", 7, 5), ("cub200", "DenseNet-121", 7, 5)],
    ("004", "Table 1"): [("mnist", "Small", 10, 7), ("cifar10", "WResnet", 8, 7),
                         ("rimagenet", "WResnet", 4, 7)],
    ("004", "Table 2"): [("cifar10", "Small", 9, 5)],
    ("004", "Table 3"): [("mnist", "Small", 10, 6), ("rimagenet", "WResnet", 4, 6)],
}


def _raw() -> pd.DataFrame:
    frames = []
    for f in sorted(PAPER_TABLES.glob("*.csv")):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        df["file"] = f.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _results(cells, dataset="cifar10", arch="resnet34", method="standard", sources=(),
             params=None, model=None):
    """Results rows of one model: ``cells`` = [(attack, eps, accuracy)], plus clean."""
    base = {"dataset": dataset, "split": "test", "arch": arch, "method": method,
            "params": json.dumps(params or {}), "teacher": "",
            "saliency_sources": json.dumps(list(sources)), "seed": 0,
            "model": model or f"{method}_{arch}_{'_'.join(sources)}", "n": 100,
            "metric": "accuracy", "flags": "[]", "attack_params": "{}", "preset": "p"}
    base["model_sha256"] = base["model"]
    rows = [{**base, "attack": "clean", "eps": 0.0, "value": 0.9}]
    rows += [{**base, "attack": a, "eps": float(Fraction(e)), "value": v}
             for a, e, v in cells]
    return rows


def _cell(tables, dataset, arch, row, col):
    t = next(t for name, t in tables.items() if name.startswith(f"{dataset} / {arch} /")
             and row in t.index and col in t.columns)
    return t, t.loc[row, col]


# -- matching ---------------------------------------------------------------------------

def test_a_row_gets_only_the_number_of_its_architecture():
    """SAD at ratio 0.8 on CIFAR-100: WRN-34-10 gets paper 001 Table 2's WRN number, a
    ResNet-10 none (the old matcher showed '26.39-33.15' across tables)."""
    sad = {"ratio": 0.8, "base_method": "standard"}
    rows = (_results([("strong_pgd", "8/255", 0.3)], "cifar100", "wrn34_10", "sad",
                     params=sad)
            + _results([("strong_pgd", "8/255", 0.3)], "cifar100", "resnet10", "sad",
                       params=sad))
    tables = accuracy_tables(pd.DataFrame(rows))
    _, wrn = _cell(tables, "cifar100", "wrn34_10", "sad", "strong_pgd 8/255 · paper")
    assert wrn.startswith("28.55 (001 Table 2)")
    r10 = next(t for n, t in tables.items() if n.startswith("cifar100 / resnet10 /"))
    assert not any("· paper" in c for c in r10.columns)
    for t in tables.values():
        for v in t.to_numpy().ravel():
            assert not re.search(r"\d-\d", str(v).split("(")[0]), v  # never a range


def test_resnet18_and_wrn_rows_get_their_own_numbers():
    rows = (_results([("weak_pgd", "4/255", 0.6)], arch="resnet18", method="trades",
                     params={"beta": 6.0})
            + _results([("weak_pgd", "4/255", 0.6)], arch="wrn34_10", method="trades",
                       params={"beta": 6.0})
            + _results([("weak_pgd", "4/255", 0.6)], arch="resnet10", method="trades",
                       params={"beta": 6.0}))
    tables = accuracy_tables(pd.DataFrame(rows))
    assert _cell(tables, "cifar10", "resnet18", "trades",
                 "weak_pgd 4/255 · paper")[1] == "69.46 (001 Table 1)"
    t, wrn = _cell(tables, "cifar10", "wrn34_10", "trades", "weak_pgd 4/255 · paper")
    assert wrn.startswith("70.24 (001 Table 1) ¹")  # WRN-32-10 taken as WRN-34-10
    assert any("WRN-32-10" in n for n in t.attrs["notes"])
    # the clean column quotes the same table as the row's attack cells
    assert _cell(tables, "cifar10", "resnet18", "trades",
                 "clean · paper")[1] == "82.77 (001 Table 1)"
    r10 = next(t for n, t in tables.items() if n.startswith("cifar10 / resnet10 /"))
    assert not any("· paper" in c for c in r10.columns)


def test_an_unmatched_variant_gets_no_published_number():
    """No fallback: a saliency source or parameter the paper does not report matches
    nothing, however many variants of the method the paper has."""
    cells = [("pgd5", f"{k}/255", 0.5) for k in (1, 2, 3, 4)]
    rows = (_results(cells, "cifar100", method="sat", sources=["resnet10_adv.gbp"],
                     model="sat_gbp")
            + _results(cells, "cifar100", method="sat", sources=["resnet10_adv.gbp_label"],
                       model="sat_gbp_label")
            + _results(cells, "cifar100", method="pgd_at", params={"steps": 10},
                       model="pgd_at")
            + _results(cells, "cifar100", method="pgd_at", params={"steps": 5},
                       model="pgd_at_5"))
    pgd5 = next(t for n, t in accuracy_tables(pd.DataFrame(rows)).items() if ": pgd5" in n)
    assert pgd5.loc["sat [resnet10_adv.gbp]", "1/255 · paper"] == "34.29 (000 Table 1)"
    assert pgd5.loc["sat [resnet10_adv.gbp_label]", "1/255 · paper"] == ""
    assert pgd5.loc["pgd_at (steps=5)", "1/255 · paper"] == "45.75 (000 Table 1)"
    assert pgd5.loc["pgd_at (steps=10)", "1/255 · paper"] == ""
    sad = _results([("strong_pgd", "8/255", 0.3)], "cifar100", "wrn34_10", "sad",
                   params={"ratio": 0.65, "base_method": "standard"})
    assert not any("· paper" in c for t in accuracy_tables(pd.DataFrame(sad)).values()
                   for c in t.columns)


def test_a_cell_printed_in_several_tables_is_quoted_once():
    rows = _results([("pgd5", "1/255", 0.5), ("pgd5", "2/255", 0.2)], method="standard")
    t = next(iter(accuracy_tables(pd.DataFrame(rows)).values()))
    assert t.loc["standard", "1/255 · paper"] == "47.71 (000 Table 1)"  # not Tables 6, 7


def test_the_note_on_our_cw_pgd_is_printed_under_the_table(tmp_path):
    rows = _results([("weak_pgd", "4/255", 0.6), ("cw_pgd", "8/255", 0.7),
                     ("apgd_eot", "12/255", 0.3)], arch="resnet18", method="trades",
                    params={"beta": 6.0})
    tables = accuracy_tables(pd.DataFrame(rows))
    t, cw = _cell(tables, "cifar10", "resnet18", "trades", "cw_pgd 8/255 · paper")
    assert cw == "78.00 (001 Table 1) ¹"
    assert t.loc["trades", "apgd_eot 12/255 · paper"] == "37.66 (001 Table 1) ²"
    assert t.loc["trades", "weak_pgd 4/255 · paper"] == "69.46 (001 Table 1)"
    assert t.attrs["notes"][0].startswith("¹ 001 cw_pgd:") and "L2" in t.attrs["notes"][0]
    assert "EOT-PGD" in t.attrs["notes"][1]
    pd.DataFrame(rows).to_parquet(tmp_path / "r.parquet")
    run_report([tmp_path / "r.parquet"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert "78.00 (001 Table 1) ¹" in md and "78.00 (001 Table 1) ¹" in page
    notes = md.split("Notes on the published numbers, the flags and the marks:")[1]
    assert notes.lstrip().startswith("- ¹ 001 cw_pgd:") and "L2 attack" in notes
    # escaped by jinja2's autoescape (markupsafe writes ' as &#39;)
    assert "<li>¹ 001 cw_pgd:" in page and "Carlini &amp; Wagner&#39;s L2" in page


def test_two_rows_that_would_match_one_cell_are_refused():
    paper = load_paper_tables()
    row = paper[(paper["table"] == "Table 1") & (paper["paper"].str.startswith("001"))
                & (paper["method"] == "trades") & (paper["attack"] == "weak_pgd")].head(1)
    clash = pd.concat([paper[list(PAPER_COLUMNS)], row[list(PAPER_COLUMNS)].assign(
        table="Table 9", value=1.0)], ignore_index=True)
    with pytest.raises(ValueError, match="would both match one cell"):
        check_paper_tables(prepare_paper_tables(clash))


# -- the transcriptions -------------------------------------------------------------------

def test_every_row_parses_and_cites_its_paper_and_table():
    from pipeline.data import DATASETS
    from pipeline.train import TRAINING

    raw = _raw()
    assert list(raw.columns[:-1]) == list(PAPER_COLUMNS)
    labels = {e.get("label", e["attack"]) for p in yaml.safe_load(PRESETS.read_text())
              ["presets"].values() for e in p.get("attacks", [])} | {"clean"}
    archs = {n for names in PAPER_ARCHS.values() for n in names}
    for r in raw.to_dict("records"):
        where = f"{r['file']}: {r['paper']} {r['table']} {r['paper_method']} {r['attack']}"
        assert re.fullmatch(r"\d{3} \S.*", r["paper"]), where
        assert re.fullmatch(r"Table \d+", r["table"]), where
        assert r["paper"][:3] == r["file"][:3], where
        if r["value"] == "":
            assert r["comment"].startswith("illegible"), where
        else:
            float(r["value"])
            assert r["eps"] == "" or Fraction(r["eps"]) >= 0, where
        if r["std"]:
            float(r["std"])
        parse_variant(r["variant"])
        assert r["metric"] in ("accuracy", "kendall_tau"), where
        assert r["dataset"] in DATASETS.names() or (
            r["dataset"] in NOT_IN_SALPIPE["dataset"] and "no salpipe data set" in r["comment"]
        ), where
        assert r["arch"] in archs or r["arch"] in NOT_IN_SALPIPE["arch"], where
        assert r["method"] in TRAINING.names() or r["method"] in SAD_METHODS or (
            r["method"] in NOT_IN_SALPIPE["method"] and "no salpipe method" in r["comment"]
        ), where
        assert r["attack"] in labels or "no salpipe attack" in r["comment"], where
    load_paper_tables()  # and no two rows can match one cell


def test_a_repeated_cell_names_a_table_printing_it():
    raw = _raw()
    key = ["dataset", "arch", "method", "variant", "attack", "eps"]
    for r in raw[raw["repeat_of"] != ""].to_dict("records"):
        same = raw[(raw["paper"] == r["paper"]) & (raw["table"] == r["repeat_of"])
                   & (raw["repeat_of"] == "")]
        for k in key:
            same = same[same[k] == r[k]]
        assert len(same) == 1, r
        if same["value"].iloc[0] != r["value"]:
            assert "disagrees" in r["comment"], r  # said where the paper contradicts itself
        else:
            assert float(same["value"].iloc[0]) == float(r["value"])


@pytest.mark.parametrize("paper, table", sorted(EXPECTED))
def test_every_table_has_the_rows_the_paper_prints(paper, table):
    raw = _raw()
    t = raw[(raw["paper"].str[:3] == paper) & (raw["table"] == table)]
    blocks = []
    for (ds, arch), b in t.groupby(["dataset", "arch"], sort=False):
        rows = b["paper_method"].unique()
        cols = b[["attack", "eps"]].drop_duplicates()
        assert len(b) == len(rows) * len(cols), (ds, arch)  # a full grid, one cell each
        assert not b.duplicated(["paper_method", "attack", "eps"]).any()
        blocks.append((ds, arch, len(rows), len(cols)))
    assert sorted(blocks) == sorted(EXPECTED[(paper, table)])

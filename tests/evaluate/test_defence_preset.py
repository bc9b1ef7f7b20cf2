"""The `defence` preset holds the adaptive suite; a preset lacking a piece is named."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError
from pipeline.evaluate.presets import adaptive_suite_gaps, load_presets


@pytest.mark.parametrize("name", ["defence", "defence_cpu", "defence_quick"])
def test_the_defence_preset_holds_the_adaptive_suite(name):
    runs = load_presets()[name]
    assert adaptive_suite_gaps(runs) == []
    apgd = [r for r in runs if r.label == "apgd_ce"]
    assert sorted(round(r.eps * 255) for r in apgd) == [1, 2, 4, 8]
    assert all(r.views == ("adaptive",) and r.params["steps"] >= 100 for r in apgd)
    assert {r.views for r in runs if r.name in ("square", "transfer")} == {("whole",)}
    assert {r.when for r in runs if r.name == "eot_pgd"} <= {"random"}
    assert name == "defence_quick" or any(r.name == "eot_pgd" for r in runs)


@pytest.mark.parametrize("drop, missing", [
    ("apgd_dlr_t", "targeted APGD-DLR"), ("square", "square (>= 5000 queries)"),
    ("transfer_seed", "another seed"), ("apgd_ce", "APGD-CE (>= 100 iterations)"),
])
def test_a_missing_piece_is_named_at_every_budget(drop, missing):
    runs = [r for r in load_presets()["defence"] if r.label != drop]
    gaps = adaptive_suite_gaps(runs)
    assert len([g for g in gaps if missing in g]) == 4
    assert {g.split(":")[0] for g in gaps} == {"1/255", "2/255", "4/255", "8/255"}


def test_the_old_sad_preset_is_not_an_adaptive_suite():
    gaps = adaptive_suite_gaps(load_presets()["sad"])
    assert any("8/255: square" not in g for g in gaps) and any("1/255" in g for g in gaps)


def test_views_of_an_entry_are_checked(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("presets:\n  x:\n    attacks:\n"
                   "      - {attack: pgd, eps: 8/255, views: [adaptive, sideways]}\n")
    with pytest.raises(ConfigError, match=r"presets\.x\.attacks\[0\]\.views"):
        load_presets(bad)
    bad.write_text("presets:\n  x:\n    attacks:\n"
                   "      - {attack: pgd, eps: 8/255, when: sometimes}\n")
    with pytest.raises(ConfigError, match=r"\.when: 'sometimes'"):
        load_presets(bad)


def test_defence_cpu_differs_from_defence_only_where_it_says():
    # declared in the presets file: 3 APGD-T targets instead of 9, PGD-20 views for PGD-50
    presets = load_presets()
    full, cpu = presets["defence"], presets["defence_cpu"]
    rename = {"pgd50": "pgd20_views"}
    assert [rename.get(r.label, r.label) for r in full] == [r.label for r in cpu]
    for a, b in zip(full, cpu):
        pa, pb = dict(a.params), dict(b.params)
        if a.label == "apgd_dlr_t":
            assert (pa.pop("n_target_classes"), pb.pop("n_target_classes")) == (9, 3)
        if a.label == "pgd50":
            assert (pa.pop("steps"), pb.pop("steps")) == (50, 20)
        assert (a.eps, a.views, a.when, a.survivors, pa) == \
            (b.eps, b.views, b.when, b.survivors, pb), a.label

"""The `defence` preset holds the adaptive suite; a preset lacking a piece is named."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError
from pipeline.evaluate.presets import adaptive_suite_gaps, load_presets


def test_the_defence_preset_holds_the_adaptive_suite():
    runs = load_presets()["defence"]
    assert adaptive_suite_gaps(runs) == []
    apgd = [r for r in runs if r.label == "apgd_ce"]
    assert sorted(round(r.eps * 255) for r in apgd) == [1, 2, 4, 8]
    assert all(r.views == ("adaptive",) and r.params["steps"] >= 100 for r in apgd)
    assert {r.views for r in runs if r.name in ("square", "transfer")} == {("whole",)}
    assert {r.when for r in runs if r.name == "eot_pgd"} == {"random"}


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

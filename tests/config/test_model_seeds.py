"""Per-model training seeds: a student's or SAD entry's ``seeds`` replace the sweep's
for that model (three seeds for the rows a claim compares, one for the rest), the DAG
has exactly those jobs, and bad seed lists are refused naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.config.dag import Dag
from pipeline.config.sweep import load_sweep

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "config" / "sweeps" / "smoke.yaml"


def sweep_with(tmp_path, students=None, **keys):
    data = yaml.safe_load(SMOKE.read_text())
    data.pop("transfer", None)
    for name, extra in (students or {}).items():
        data["students"][name].update(extra)
    data.update(keys)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_sweep(path)


def test_a_students_seeds_replace_the_sweeps_and_a_sad_model_follows_its_base(tmp_path):
    sweep = sweep_with(tmp_path, students={"standard": {"seeds": [0, 1, 2]}},
                       seeds=[0], sad={"sad": {"base": "standard"},
                                       "at_sad": {"base": "pgd_at"},
                                       "sad_one": {"base": "standard", "seeds": [2]}})
    assert sweep.seeds_for("standard") == (0, 1, 2)
    assert sweep.seeds_for("pgd_at") == (0,)
    assert sweep.seeds_for("sad") == (0, 1, 2)       # its base's
    assert sweep.seeds_for("at_sad") == (0,)
    assert sweep.seeds_for("sad_one") == (2,)
    assert sweep.all_seeds() == (0, 1, 2)
    cells = Dag(sweep, "data").cells()
    by_model = {}
    for _, model, seed in cells:
        by_model.setdefault(model, []).append(seed)
    assert by_model["standard"] == [0, 1, 2] and by_model["pgd_at"] == [0]
    assert by_model["sad"] == [0, 1, 2] and by_model["sad_one"] == [2]
    assert len(cells) == len(set(cells))


@pytest.mark.parametrize("students, keys, message", [
    ({"standard": {"seeds": []}}, {}, "students.standard.seeds: empty"),
    ({"standard": {"seeds": [0, 0]}}, {}, "students.standard.seeds: [0, 0] repeats a seed"),
    ({"standard": {"seeds": [-1]}}, {}, "students.standard.seeds: [-1] are not seeds"),
    ({}, {"seeds": []}, "seeds: empty"),
    ({}, {"sad": {"sad": {"base": "standard", "seeds": [5]}}},
     "sad.sad.seeds: [5] are not seeds of its base 'standard'"),
    # another student's seed 1 is trained and evaluated: it cannot be the other_seed source
    ({"pgd_at": {"seeds": [0, 1]}}, {"sad": {"sad": {"base": "standard"}}, "transfer_seed": 1},
     "transfer_seed: 1 is one of the sweep's seeds [0, 1]"),
])
def test_bad_seed_lists_are_refused_naming_the_key(tmp_path, students, keys, message):
    with pytest.raises(ConfigError) as e:
        sweep_with(tmp_path, students=students, **keys)
    assert message in str(e.value)

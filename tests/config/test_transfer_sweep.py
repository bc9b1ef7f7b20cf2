"""A sweep's transfer sources: ``transfer`` (per data set changes), the SAD models'
``base`` and ``other_seed``, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.config.sweep import load_sweep

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "config" / "sweeps" / "smoke.yaml"


def sweep_with(tmp_path, **keys):
    data = yaml.safe_load(SMOKE.read_text())
    data.pop("transfer", None)
    data.update({"sad": {"sad": {"base": "standard"}, "at_sad": {"base": "pgd_at"}},
                 **keys})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_sweep(path)


def test_named_sources_and_the_sad_models_own(tmp_path):
    sweep = sweep_with(tmp_path, transfer={"default": {"model": "standard", "seed": 1}},
                       transfer_seed=2)
    assert sweep.transfer_sources("shapes", "pgd_at", 0) == {"default": ("standard", 1)}
    assert sweep.transfer_sources("shapes", "at_sad", 0) == {
        "default": ("standard", 1), "base": ("pgd_at", 0), "other_seed": ("pgd_at", 2)}


def test_a_sad_entry_sets_its_own_transfer_seed(tmp_path):
    sweep = sweep_with(tmp_path, sad={"sad": {"base": "standard", "transfer_seed": 3}},
                       transfer_seed=2)
    assert sweep.transfer_sources("shapes", "sad", 0)["other_seed"] == ("standard", 3)


def test_without_a_transfer_seed_there_is_no_other_seed(tmp_path):
    sweep = sweep_with(tmp_path)
    assert sweep.transfer_sources("shapes", "sad", 0) == {"base": ("standard", 0)}


def test_a_data_set_changes_or_drops_a_source_by_name(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    shapes = {**data["datasets"]["shapes"],
              "transfer": {"default": {"model": "sad", "seed": 4}, "robust": None}}
    sweep = sweep_with(tmp_path, transfer={"default": {"model": "standard", "seed": 1},
                                           "robust": {"model": "pgd_at", "seed": 1}},
                       datasets={"shapes": shapes})
    assert sweep.transfer_sources("shapes", "standard", 0) == {"default": ("sad", 4)}


@pytest.mark.parametrize("keys, message", [
    ({"transfer": {"default": {"model": "nobody", "seed": 1}}},
     "transfer.default.model: 'nobody' is not a student or SAD model of this sweep on "
     "data set 'shapes'"),
    ({"transfer": {"default": {"model": "standard", "seed": "one"}}},
     "transfer.default.seed: expected an integer, got 'one'"),
    ({"transfer": {"default": {"model": "standard"}}},
     "missing required key(s): sweep s.transfer.default.seed"),
    ({"transfer": {"default": {"model": "standard", "seed": 0}}},
     "transfer.default.seed: 0 is one of the sweep's seeds [0]"),
    ({"transfer": {"default": {"model": "standard", "seed": -1}}},
     "transfer.default.seed: -1 is not a seed"),
    ({"transfer": {"default": {"model": "standard", "sede": 1}}},
     "transfer.default.sede: unknown key (did you mean 'seed'?)"),
    ({"transfer": {"base": {"model": "standard", "seed": 1}}},
     "transfer.base: 'base' is reserved"),
    ({"transfer": {"other_seed": {"model": "standard", "seed": 1}}},
     "transfer.other_seed: 'other_seed' is reserved"),
    ({"transfer": {"Bad-Name": {"model": "standard", "seed": 1}}},
     "transfer.Bad-Name: a transfer source name is [a-z0-9_]+"),
    ({"transfer_seed": 0}, "transfer_seed: 0 is one of the sweep's seeds [0]"),
    ({"transfer_seed": "one"}, "transfer_seed: expected an integer"),
    ({"sad": {"sad": {"base": "standard", "transfer_seed": 0}}},
     "sad.sad.transfer_seed: 0 is one of the sweep's seeds"),
])
def test_bad_transfer_keys_are_refused_naming_the_key(tmp_path, keys, message):
    with pytest.raises(ConfigError) as e:
        sweep_with(tmp_path, **keys)
    assert message in str(e.value)


def test_a_data_set_source_must_be_a_student_there(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    shapes = {**data["datasets"]["shapes"],
              "transfer": {"default": {"model": "nobody", "seed": 1}}}
    with pytest.raises(ConfigError, match=r"datasets\.shapes\.transfer\.default\.model: "
                                          "'nobody' is not a student"):
        sweep_with(tmp_path, datasets={"shapes": shapes})

"""Config loading: exact budgets, errors that name the key, sweep cross-checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from pipeline.config import ConfigError, build_method, from_dict
from pipeline.core.budget import format_budget, parse_budget
from pipeline.stages.sweep import load_checked_sweep as load_sweep

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Opt:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1


@dataclass(frozen=True)
class Cfg:
    epochs: int = 3
    opt: Opt = field(default_factory=Opt)
    tags: tuple[str, ...] = ()


@pytest.mark.parametrize(
    "text, value",
    [("8/255", 8 / 255), ("2.5/255", 2.5 / 255), ("0.03", 0.03), ("0", 0.0), (1, 1.0)],
)
def test_budgets_parse_exactly(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("bad", ["eight/255", "9/2", "-1/255", "1/0", True])
def test_bad_budgets_name_the_field(bad):
    with pytest.raises(ValueError, match="eps"):
        parse_budget(bad, field="eps")


def test_format_budget_round_trips_multiples_of_1_255():
    assert format_budget(parse_budget("8/255")) == "8/255"
    assert format_budget(0.1) == "0.1"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"epoch": 3}, "train.epoch: unknown key (did you mean 'epochs'?)"),
        ({"opt": {"lrr": 1}}, "train.opt.lrr: unknown key"),
        ({"opt": {"name": "sgdd"}}, "allowed values: sgd, adam"),
        ({"epochs": "three"}, "train.epochs: expected an integer"),
        ({"opt": {"lr": "fast"}}, "train.opt.lr: expected a number"),
        ({"tags": "a"}, "train.tags: expected a list"),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(Cfg, data, "train")
    assert message in str(e.value)


def test_unknown_method_lists_the_registry():
    from pipeline.attacks import ATTACKS

    with pytest.raises(ConfigError, match="unknown attack 'pgdd'.*known: .*pgd"):
        build_method(ATTACKS, "pgdd", {}, "evaluate")
    with pytest.raises(ConfigError, match="evaluate.stepz: unknown key"):
        build_method(ATTACKS, "pgd", {"stepz": 3}, "evaluate")
    pgd = build_method(ATTACKS, "pgd", {"eps": "8/255", "steps": 2}, "evaluate")
    assert pgd.eps == 8 / 255 and pgd.steps == 2


def _sweep(tmp_path, edit):
    data = yaml.safe_load((REPO / "config/sweeps/smoke.yaml").read_text())
    edit(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["students"]["standard"].update(method="standrd"),
         "students.standard: unknown training method 'standrd'"),
        (lambda d: d["students"]["standard"].update(saliency=["cnn_std.gbp"]),
         "source 'cnn_std.gbp' is not in saliency"),
        (lambda d: d["saliency"].update({"nobody.grad": {"method": "grad"}}),
         "teacher 'nobody' is not in teachers"),
        (lambda d: d["datasets"]["shapes"]["params"].update(resolutoin=16),
         "resolutoin: unknown key"),
        (lambda d: d["teachers"]["cnn_std"].update(mode="robust"), "allowed values: std"),
        (lambda d: d.update(sedes=[0]), "sedes: unknown key (did you mean 'seeds'?)"),
        (lambda d: d.update(sad={"s": {"ratio": 0.5}}), "missing required key(s): sweep p.sad.s.base"),
        (lambda d: d.update(sad={"s": {"base": "standard", "normalise": "l2"}}),
         "sad.s.normalise: 'l2' is not allowed"),
        (lambda d: d.update(sad={"s": {"base": "standard", "ratoi": 0.5}}),
         "sad.s.ratoi: unknown key (did you mean 'ratio'?)"),
        (lambda d: d.update(sad={"s": {"base": "standard", "seed": 1}}),
         "sad.s.seed: a SAD job's seed is its job's seed"),
        (lambda d: d.update(sad={"s": {"base": "standard", "saliency": "gradd"}}),
         "sad.s.saliency: unknown saliency method 'gradd'"),
        (lambda d: d.update(sad={"s": {"base": "standard", "saliency": "gbp",
                                       "grad_mode": "exact"}}),
         "'exact' needs saliency 'grad'"),
        (lambda d: d.update(sad={"s": {"base": "nobody"}}), "'nobody' is not a student"),
    ],
)
def test_profile_errors_name_the_key(tmp_path, edit, message):
    with pytest.raises(ConfigError) as e:
        load_sweep(_sweep(tmp_path, edit))
    assert message in str(e.value)


def test_every_shipped_profile_loads():
    for path in sorted((REPO / "config/sweeps").glob("*.yaml")):
        sweep = load_sweep(path)
        assert sweep.name == path.stem
        assert sweep.students


def test_sweep_sad_entries_are_sad_configs():
    from pipeline.config.sad import SadConfig

    sweep = load_sweep(REPO / "config/sweeps/cifar_quick.yaml")
    entry = sweep.sad["sad_bn_only"]
    assert isinstance(entry, SadConfig) and entry.base == "standard"
    assert entry.config() == SadConfig(ratio=0.8, add_saliency=False,
                                       attack_params={"eps": "8/255", "steps": 5})
    assert entry.overrides() == {"attack_params": {"eps": "8/255", "steps": 5},
                                 "add_saliency": False}
    assert SadConfig(saliency="gbp").overrides() == {"saliency": "gbp"}  # grad_mode implied
    assert SadConfig(saliency="gbp", ratio=0, grad_mode="exact").overrides() == {
        "saliency": "gbp", "ratio": 0, "grad_mode": "exact"}

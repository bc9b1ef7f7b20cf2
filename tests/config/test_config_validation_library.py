"""from_dict's type checks are pydantic's (strict mode), with salpipe's messages.

Each case is checked twice: by ``pydantic.TypeAdapter(hint)`` in strict mode directly and
by :func:`from_dict` on a one-field dataclass; both must accept or both refuse. The few
places where salpipe is deliberately laxer than strict pydantic (numbers written as text,
a tuple for a list) are listed apart, and the messages must still name the dotted key,
the nearest key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
import pytest

from pipeline.config import ConfigError, budget_field, from_dict

STRICT = pydantic.ConfigDict(strict=True, allow_inf_nan=False)


def one_field(hint: Any) -> type:
    return dataclasses.make_dataclass("One", [("v", hint)], frozen=True)


def library_accepts(hint: Any, value: Any) -> bool:
    try:
        pydantic.TypeAdapter(hint, config=STRICT).validate_python(value)
    except pydantic.ValidationError:
        return False
    return True


def config_accepts(hint: Any, value: Any) -> bool:
    try:
        from_dict(one_field(hint), {"v": value}, "cfg")
    except ConfigError:
        return False
    return True


SAME = [
    (int, 3), (int, True), (int, 3.0), (int, "3"), (int, None),
    (bool, True), (bool, 1), (bool, "yes"),
    (str, "a"), (str, 1), (str, None),
    (float, 1), (float, 0.5), (float, True), (float, float("nan")), (float, [1.0]),
    (Literal["sgd", "adam"], "adam"), (Literal["sgd", "adam"], "sgdd"),
    (int | None, None), (int | None, 2), (int | None, "2"),
    (list[int], [1, 2]), (list[int], [1, "2"]), (list[int], "12"), (list[int], {1, 2}),
    (tuple[str, ...], ("a",)), (tuple[str, ...], ("a", 1)),
    (dict[str, int], {"a": 1}), (dict[str, int], {"a": 1.5}), (dict[str, int], [("a", 1)]),
    (dict[str, Any], {"a": object()}),
]


@pytest.mark.parametrize("hint, value", SAME)
def test_accepted_and_refused_like_strict_pydantic(hint, value):
    assert config_accepts(hint, value) == library_accepts(hint, value)


# Laxer than strict pydantic on purpose (as before pydantic): YAML reads 8/255 and 1e-3 as
# text, and a programmatic tuple may fill a list field and the other way round.
LAXER = [(float, "8/255"), (float, "1e-3"), (list[int], (1, 2)), (tuple[str, ...], ["a"])]


@pytest.mark.parametrize("hint, value", LAXER)
def test_salpipe_extras_over_strict_pydantic(hint, value):
    assert config_accepts(hint, value) and not library_accepts(hint, value)


def test_values_come_back_converted():
    assert from_dict(one_field(float), {"v": "8/255"}).v == 8 / 255
    assert from_dict(one_field(float), {"v": 2}).v == 2.0
    assert type(from_dict(one_field(float), {"v": 2}).v) is float
    assert from_dict(one_field(tuple[str, ...]), {"v": ["a", "b"]}).v == ("a", "b")
    assert from_dict(one_field(list[int]), {"v": (1, 2)}).v == [1, 2]


@dataclass(frozen=True)
class Attack:
    name: Literal["pgd", "fgsm"] = "pgd"
    eps: float = budget_field(8 / 255)
    steps: int = 10


@dataclass(frozen=True)
class Student:
    lr: float = 0.1
    attack: Attack = field(default_factory=Attack)
    seeds: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Sweep:
    students: dict[str, Student] = field(default_factory=dict)
    extra: Attack | None = None
    sizes: dict[int, int] = field(default_factory=dict)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"students": {"x": {"attack": {"stepz": 3}}}},
         "sweep.students.x.attack.stepz: unknown key (did you mean 'steps'?); "
         "allowed keys: name, eps, steps"),
        ({"students": {"x": {"attack": {"name": "pgdd"}}}},
         "sweep.students.x.attack.name: 'pgdd' is not allowed (did you mean 'pgd'?); "
         "allowed values: pgd, fgsm"),
        ({"students": {"x": {"lr": "fast"}}},
         "sweep.students.x.lr: expected a number, got 'fast'"),
        ({"students": {"x": {"lr": "inf"}}},
         "sweep.students.x.lr: expected a finite number, got 'inf'"),
        ({"students": {"x": {"seeds": [0, "1"]}}},
         "sweep.students.x.seeds[1]: expected an integer, got '1'"),
        ({"students": {"x": {"attack": {"eps": "9/2"}}}},
         "sweep.students.x.attack.eps: budget '9/2' is outside [0, 1]"),
        ({"students": {"x": {"attack": {"steps": True}}}},
         "sweep.students.x.attack.steps: expected an integer, got True"),
        ({"students": {"x": 3}}, "sweep.students.x: expected a mapping, got int"),
        ({"students": []}, "sweep.students: expected a mapping, got []"),
        ({"extra": {"epz": 0.1}}, "sweep.extra.epz: unknown key (did you mean 'eps'?)"),
        ({"sizes": {5: "a"}}, "sweep.sizes.5: expected an integer, got 'a'"),
        ({"studnets": {}}, "sweep.studnets: unknown key (did you mean 'students'?); "
                           "allowed keys: students, extra, sizes"),
    ],
)
def test_messages_name_key_nearest_and_allowed(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(Sweep, data, "sweep")
    assert message in str(e.value)


def test_nested_values_are_built():
    sweep = from_dict(Sweep, {"students": {"x": {"attack": {"eps": "4/255"}}},
                              "extra": None})
    assert sweep.students["x"].attack == Attack(eps=4 / 255)
    assert sweep.extra is None
    assert from_dict(Sweep, {"students": {"x": None}}).students["x"] == Student()


def test_first_union_member_wins_and_speaks():
    cls = one_field(int | list[int])
    assert from_dict(cls, {"v": [1]}).v == [1]
    with pytest.raises(ConfigError, match=r"^c\.v: expected an integer, got 'x'$"):
        from_dict(cls, {"v": "x"}, "c")

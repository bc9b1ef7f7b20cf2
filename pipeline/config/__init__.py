"""Typed configuration: frozen dataclasses built from YAML mappings, with errors naming the key.

Every stage takes frozen dataclasses; :func:`from_dict` builds one from a mapping (a YAML
section, CLI ``-p key=value`` pairs) and fails with a :class:`ConfigError` that names the
offending key, says what was expected and lists what is allowed. The values are checked
by pydantic in strict mode against each field's type hint (no int from ``"3"``, no number
from ``true``); a float field also takes ``"8/255"``, and a field whose metadata has
``budget=True`` takes budgets such as ``"8/255"`` (parsed exactly, never eval-ed).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import operator
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import pydantic
import yaml
from pydantic_core import PydanticCustomError

from pipeline.core.budget import parse_budget

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names it."""


def budget_field(default: float, **kw) -> Any:
    """A dataclass field holding an l-inf budget; YAML may write it as ``"8/255"``."""
    return dataclasses.field(default=default, metadata={"budget": True}, **kw)


def _suggest(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields take nested mappings."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    # required keys first (a base class's defaulted fields may be declared before them)
    fields = {
        f.name: f
        for f in sorted(
            (f for f in dataclasses.fields(cls) if f.init),
            key=lambda f: f.default is not dataclasses.MISSING
            or f.default_factory is not dataclasses.MISSING,
        )
    }
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(
                f"{path}: unknown key{_suggest(str(key), list(fields))}; "
                f"allowed keys: {', '.join(fields)}"
            )
        kwargs[key] = _coerce(value, hints[key], fields[key], path)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"missing required key(s): {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def _coerce(value: Any, hint: Any, field: dataclasses.Field | None, path: str) -> Any:
    """``value`` validated by pydantic against ``hint``; a refusal is a ConfigError naming
    ``path`` (extended by pydantic's error location: ``.key`` and ``[i]``)."""
    budget = field is not None and bool(field.metadata.get("budget"))
    try:
        # repr in the key: Literal["a", "b"] == Literal["b", "a"], which list their choices
        return _adapter(repr(hint), hint, budget).validate_python(value)
    except pydantic.ValidationError as e:
        err = e.errors()[0]  # the first refusal, in data order like the old walker's
        raise _config_error(err, _dotted(path, value, err["loc"])) from None


# YAML's own types are kept (strict): no int from "3" or 3.0, no number from true.
_STRICT = pydantic.ConfigDict(strict=True)
_EXPECTED = {"bool_type": "true or false", "int_type": "an integer", "float_type": "a number",
             "finite_number": "a finite number", "string_type": "a string",
             "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping"}


@functools.cache
def _adapter(_key: str, hint: Any, budget: bool) -> pydantic.TypeAdapter:
    if budget:  # the field's own hint only says whether None is allowed
        _budget = Annotated[float, pydantic.PlainValidator(_parse_budget)]
        return pydantic.TypeAdapter(_budget | None if _allows_none(hint) else _budget)
    return pydantic.TypeAdapter(_pydantic_type(hint), config=_STRICT)


def _pydantic_type(hint: Any) -> Any:
    """``hint`` as pydantic should check it; a type the config does not check is ``Any``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        members = tuple(_pydantic_type(a) for a in args if a is not type(None))
        # the first member that takes the value wins, as in the old walker
        first_wins = pydantic.Field(union_mode="left_to_right")
        one = members[0] if len(members) == 1 else Annotated[
            functools.reduce(operator.or_, members), first_wins]
        return one | None if type(None) in args else one
    if origin is Literal:
        return Annotated[hint, pydantic.WrapValidator(functools.partial(_choices, hint))]
    if origin in (tuple, list):  # either sequence, any length, items of the first type
        item = _pydantic_type(args[0]) if args else Any
        kind = tuple[item, ...] if origin is tuple else list[item]
        as_kind = pydantic.BeforeValidator(functools.partial(_sequence, origin))
        return Annotated[kind, as_kind]
    if origin is dict:  # keys are not checked
        return dict[Any, _pydantic_type(args[1]) if len(args) == 2 else Any]
    if dataclasses.is_dataclass(hint):
        return Annotated[Any, pydantic.PlainValidator(functools.partial(_nested, hint))]
    if hint is float:
        from_text = pydantic.BeforeValidator(_number_from_text)
        return Annotated[float, pydantic.AllowInfNan(False), from_text]
    return hint if hint in (bool, int, str) else Any


def _sequence(kind: type, value: Any) -> Any:
    return kind(value) if isinstance(value, (list, tuple)) else value


def _number_from_text(value: Any) -> Any:
    """A float field takes ``"8/255"`` (in [0, 1]) and ``"1e-3"``; other text is refused."""
    if not isinstance(value, str):
        if isinstance(value, (int, float)):
            return value
        # pydantic would take numpy's ints (anything with __index__); int and float only
        raise PydanticCustomError("float_type", "not a number")
    try:
        number = parse_budget(value) if "/" in value else float(value)
    except ValueError:
        return value  # refused by pydantic as not a number
    if not math.isfinite(number):  # NaN and inf stop where they enter
        raise PydanticCustomError("finite_number", "not finite")
    return number


def _choices(hint: Any, value: Any, handler: Any) -> Any:
    try:
        return handler(value)
    except pydantic.ValidationError:  # pydantic's message does not list the choices
        raise PydanticCustomError("choice", "not allowed", {"hint": hint}) from None


def _nested(cls: type, value: Any) -> Any:
    try:
        return from_dict(cls, value)
    except ConfigError:  # said again by _config_error, with the key's full path
        raise PydanticCustomError("nested", "bad {cls}", {"cls": cls}) from None


def _parse_budget(value: Any) -> float:
    try:
        return parse_budget(value)
    except ValueError:  # said again by _config_error, naming the key
        raise PydanticCustomError("budget", "bad budget") from None


def _config_error(err: dict, path: str) -> ConfigError:
    """A ConfigError naming ``path`` for pydantic's error ``err``."""
    kind, got = err["type"], err["input"]
    try:
        if kind == "nested":
            from_dict(err["ctx"]["cls"], got, path)
        elif kind == "budget":
            parse_budget(got, field=path)
    except ValueError as e:
        return e if isinstance(e, ConfigError) else ConfigError(str(e))
    if kind == "choice":
        allowed = [str(a) for a in get_args(err["ctx"]["hint"])]
        return ConfigError(f"{path}: {got!r} is not allowed{_suggest(str(got), allowed)};"
                           f" allowed values: {', '.join(allowed)}")
    if kind in _EXPECTED:
        return ConfigError(f"{path}: expected {_EXPECTED[kind]}, got {got!r}")
    return ConfigError(f"{path}: {err['msg']}")


def _dotted(path: str, value: Any, loc: tuple) -> str:
    """``path`` followed down pydantic's error location ``loc`` through ``value``."""
    for part in loc:
        if isinstance(value, dict) and part in value:
            path, value = f"{path}.{part}", value[part]
        elif isinstance(value, (list, tuple)) and isinstance(part, int) and part < len(value):
            path, value = f"{path}[{part}]", value[part]
        # anything else names a union member, not a place in the data
    return path


def _allows_none(hint: Any) -> bool:
    return get_origin(hint) in (typing.Union, types.UnionType) and type(None) in get_args(hint)


def build_method(registry, name: str, params: dict | None, where: str):
    """``registry.get(name)(**params)`` with config errors that name ``where``.

    Registered methods are frozen dataclasses, so their parameters are checked like any
    other config section; an unknown name lists the registry's names.
    """
    if name not in registry:
        raise ConfigError(
            f"{where}: unknown {registry.family} {name!r}{_suggest(name, registry.names())}; "
            f"known: {', '.join(registry.names())}"
        )
    factory = registry.get(name)
    if dataclasses.is_dataclass(factory):
        return from_dict(factory, params or {}, where)
    return factory(**(params or {}))


def parse_pairs(pairs, flag: str = "-p") -> dict[str, Any]:
    """``["eps=8/255", "steps=5"]`` -> ``{"eps": "8/255", "steps": 5}``.

    Values are YAML scalars (``5`` -> 5, ``true`` -> True, ``8/255`` stays a string for
    the budget parser); a pair without ``=`` is a :class:`ConfigError` naming it.
    """

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"{flag} {pair!r}: the value {value!r} is not valid YAML "
                              f"({getattr(e, 'problem', None) or e}); quote it or fix it"
                              ) from None
    return out


def load_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """The YAML document in ``path``; a missing file or a syntax error is a
    :class:`ConfigError` naming the file (and the line and column of the error)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{what} {path}{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file") from None


def set_dotted(data: dict, key: str, value: Any, where: str = "") -> dict:
    """``data[a][b] = value`` for ``key`` ``"a.b"`` (nested mappings made as needed);
    a :class:`ConfigError` names the key when a parent is not a mapping."""
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where + '.' if where else ''}{key}: {p!r} is not a mapping")
    node[leaf] = value
    return data


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain YAML/JSON-able data; used in sidecars and provenance."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj

"""Typed configuration: frozen dataclasses built from YAML mappings, with errors naming the key.

Every stage takes frozen dataclasses; :func:`from_dict` builds one from a mapping (a YAML
section, CLI ``-p key=value`` pairs) and fails with a :class:`ConfigError` that names the
offending key, says what was expected and lists what is allowed. A field whose metadata
has ``budget=True`` accepts budgets such as ``"8/255"`` (parsed exactly, never eval-ed).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

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
    if field is not None and field.metadata.get("budget"):
        if value is None and _allows_none(hint):
            return None
        try:
            return parse_budget(value, field=path)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, None, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{path}: {value!r} is not allowed{_suggest(str(value), [str(a) for a in allowed])};"
                f" allowed values: {', '.join(map(str, allowed))}"
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = get_args(hint)
        item = args[0] if args else Any
        items = [_coerce(v, item, None, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        args = get_args(hint)
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, item, None, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = parse_budget(value, field=path) if "/" in value else float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(number):  # NaN and inf stop where they enter
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


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

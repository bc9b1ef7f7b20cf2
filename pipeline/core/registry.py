"""A small name -> factory registry (the timm pattern, reduced to name -> factory).

Each method family (models, data sets, saliency methods, attacks, training methods)
creates one :class:`Registry` in its package ``__init__`` and registers its
implementations with the :meth:`Registry.register` decorator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T", bound=Callable)

_NAME = re.compile(r"^[a-z0-9_]+$")


class UnknownNameError(KeyError, ValueError):
    """Raised by :meth:`Registry.get` for a name that is not registered."""

    def __init__(self, family: str, name: str, known: list[str]):
        self.family, self.name, self.known = family, name, known
        super().__init__(name)

    def __str__(self) -> str:
        return (
            f"unknown {self.family} {self.name!r}; known {self.family} names: "
            + ", ".join(self.known)
        )


class Registry:
    """Maps ``[a-z0-9_]+`` names to factories (classes or functions).

    Args:
        family: what the registry holds, used in error messages ("saliency method").
    """

    def __init__(self, family: str):
        self.family = family
        self._items: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; names must be unique."""
        if not _NAME.match(name):
            raise ValueError(f"{self.family} name {name!r} must match [a-z0-9_]+")

        def decorate(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> Callable:
        """The factory registered as ``name``; :class:`UnknownNameError` lists the known names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.family, name, self.names()) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

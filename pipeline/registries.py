"""Every registry of the package, for ``salpipe list`` and the registry contract tests."""

from __future__ import annotations

import importlib

from pipeline.registry import Registry

# (heading, module, attribute) for each family; imported lazily so `salpipe --help` stays fast.
FAMILIES = [
    ("datasets", "pipeline.data", "DATASETS"),
    ("models", "pipeline.models", "MODELS"),
    ("training methods", "pipeline.train", "TRAINING"),
    ("saliency methods", "pipeline.saliency", "SALIENCY"),
    ("attacks", "pipeline.attacks", "ATTACKS"),
]


def all_registries() -> list[tuple[str, Registry]]:
    """(heading, registry) for every family whose package is importable."""
    out = []
    for title, module, attr in FAMILIES:
        out.append((title, getattr(importlib.import_module(module), attr)))
    return out

"""``salpipe list``: every registry of the package, for the CLI and the contract tests."""

from __future__ import annotations

from pipeline.attacks import ATTACKS
from pipeline.cache import STREAMS
from pipeline.core.registry import Registry
from pipeline.data import DATASETS
from pipeline.models import MODELS
from pipeline.sad import WRAPPERS
from pipeline.saliency import SALIENCY
from pipeline.train import TRAINING


def all_registries() -> list[tuple[str, Registry]]:
    """(heading, registry) for every family."""
    return [
        ("datasets", DATASETS),
        ("models", MODELS),
        ("training methods", TRAINING),
        ("saliency methods", SALIENCY),
        ("attacks", ATTACKS),
        ("stream modes", STREAMS),
        ("model wrappers", WRAPPERS),
    ]

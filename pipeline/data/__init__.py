"""Data set adapters, registered by name; each reads a standard on-disk layout (or generates
``shapes``) and yields images, labels and, where the data set has them, masks and boxes."""

from pipeline.registry import Registry

DATASETS = Registry("dataset")

__all__ = ["DATASETS"]

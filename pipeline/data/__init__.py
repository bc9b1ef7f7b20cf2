"""Data set adapters, registered by name; each reads a standard on-disk layout (or generates
``shapes``) and yields images, labels and, where the data set has them, masks and boxes.

The interface every adapter follows is described in :mod:`pipeline.data.base`; the stage
that writes a data set into the Zarr cache is :func:`pipeline.stages.prepare_data.run_prepare_data`.
"""

from pipeline.core.registry import Registry

DATASETS = Registry("dataset")

from pipeline.data import (  # noqa: F401  (importing registers the adapters)
    cifar,
    cub200,
    flowers17,
    imagefolder,
    shapes,
    tinyimagenet,
)
from pipeline.data.base import Block, DataError, DatasetAdapter

__all__ = ["DATASETS", "Block", "DataError", "DatasetAdapter"]

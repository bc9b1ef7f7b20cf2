"""The data set adapter interface: every registered data set is a frozen dataclass config.

An adapter's fields are its parameters (``root``, ``resolution``, ``limit``, ``seed``...),
so ``build_method(DATASETS, name, params, "dataset")`` validates them. It exposes:

- ``classes() -> list[str]``: class names, index = label;
- ``splits() -> list[str]``: e.g. ``["train", "test"]`` or ``["train", "val", "test"]``;
- ``split_size(split) -> int``: number of images the split will yield;
- ``has_masks()`` / ``has_boxes()``: which annotations the data set provides;
- ``iter_blocks(split, block) -> Iterator[Block]``: the split in order, ``block`` images at a
  time (the last block may be shorter), decoded to ``uint8 [B,3,R,R]``;
- ``source_signature() -> str``: a cheap hash of what would be read (file names, sizes,
  mtimes; or just the parameters for generated data), used to skip an up-to-date store.

Geometry (file-based adapters, :mod:`pipeline.data.imageio`): every image becomes
``resolution x resolution`` RGB. ``fit="resize"`` (default) squashes the whole image to the
square (aspect ratio not kept, nothing cut off); ``fit="crop"`` scales the short side to
``resolution`` and cuts the central square. Masks follow with nearest-neighbour sampling,
boxes are scaled (and shifted by the crop), converted to inclusive pixel corners and
clipped to the image. Greyscale / palette / RGBA images are converted to RGB.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """Bad input data (missing/corrupt file, wrong-size mask, box outside the image, ...).

    The message always names the offending file.
    """


@dataclass
class Block:
    """A run of consecutive images of one split.

    Shape:
        images ``uint8 [B,3,H,W]``; labels ``int64 [B]``; masks ``bool [B,H,W]`` and
        has_mask ``bool [B]`` (both ``None`` where the data set has no masks; an image
        without a mask has an all-False plane); boxes ``int16 [B,4]`` as (x0, y0, x1, y1)
        inclusive pixel corners (``None`` where the data set has no boxes).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None
    has_mask: np.ndarray | None = None
    boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


class DatasetAdapter(abc.ABC):
    """Mixin base of every registered data set config (see the module docstring)."""

    @abc.abstractmethod
    def classes(self) -> list[str]:
        """Class names; label ``i`` is ``classes()[i]``."""

    @abc.abstractmethod
    def splits(self) -> list[str]:
        """Split names in a fixed order."""

    @abc.abstractmethod
    def split_size(self, split: str) -> int:
        """Number of images :meth:`iter_blocks` yields for ``split``."""

    @abc.abstractmethod
    def has_masks(self) -> bool:
        """Whether blocks carry ``masks``/``has_mask``."""

    @abc.abstractmethod
    def has_boxes(self) -> bool:
        """Whether blocks carry ``boxes``."""

    @abc.abstractmethod
    def iter_blocks(self, split: str, block: int) -> Iterator[Block]:
        """Yield the split in order, ``block`` images at a time."""

    @abc.abstractmethod
    def source_signature(self) -> str:
        """sha256 hex of what would be read (cheap: names, sizes, mtimes or parameters)."""

    def check_split(self, split: str) -> str:
        """``split`` itself, or a ValueError listing the data set's splits."""
        if split not in self.splits():
            raise ValueError(
                f"data set has no split {split!r}; its splits: {', '.join(self.splits())}"
            )
        return split

    def params(self) -> dict:
        """The config's fields as plain data (stored in the cache's ``params`` attr)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_resolution(resolution: int, name: str = "resolution") -> None:
    """Raise ValueError unless ``resolution`` is a sensible positive image side."""
    if not 4 <= resolution <= 4096:
        raise ValueError(f"{name} must be between 4 and 4096 pixels, got {resolution}")


def subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a deterministic subset of ``range(n)`` of size ``limit`` (kept in order).

    ``limit=None`` (or ``>= n``) keeps everything.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    idx = np.random.default_rng(seed).permutation(n)[:limit]
    return np.sort(idx)

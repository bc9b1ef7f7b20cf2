"""Shared machinery of the adapters that read one image file per sample.

A subclass lists its samples as :class:`Record` s per split (``_scan()``, parsed once and
cached on the config object); this mixin subsamples them (``limit``, ``seed``), decodes
them block by block and hashes what it would read.
"""

from __future__ import annotations

import abc
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.data.base import (
    Block,
    DataError,
    DatasetAdapter,
    check_resolution,
    subsample,
)
from pipeline.data.imageio import (
    Fit,
    decode_image,
    decode_mask,
    threshold_mask,
    transform_box,
)


@dataclass(frozen=True)
class Record:
    """One sample on disk.

    Args:
        path: the image file.
        label: class index.
        box: ``(x0, y0, x1, y1)`` continuous original pixels, exclusive ends, or None.
        box_where: where the box came from (file and line), for error messages.
        mask_path: the mask file, or None when this image has no mask.
    """

    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    box_where: str = ""
    mask_path: Path | None = None


def read_lines(path: Path) -> list[list[str]]:
    """Whitespace-split non-empty lines of an annotation file (missing -> DataError)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    return [ln.split() for ln in text.splitlines() if ln.strip()]


def check_classes_nonempty(records: list[Record], classes: list[str], where: Path) -> None:
    """An empty class is an error naming the class and the file/folder that defines it."""
    counts = np.bincount([r.label for r in records], minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"class(es) with no images: {', '.join(empty)} (defined in {where})")


@dataclass(frozen=True, kw_only=True)
class FileDataset(DatasetAdapter):
    """Base of the file-based adapters: the options they share (subclasses add ``root``).

    Args:
        resolution: output side in pixels.
        fit: ``resize`` or ``crop`` (see :mod:`pipeline.data.base`).
        limit: at most this many images per split (seeded random subset), None = all.
        seed: seed of that subset.
    """

    resolution: int = 64
    fit: Fit = "resize"
    limit: int | None = None
    seed: int = 0

    mask_rule: ClassVar[Callable[[np.ndarray], np.ndarray]] = staticmethod(threshold_mask)

    def __post_init__(self):
        check_resolution(self.resolution)

    @abc.abstractmethod
    def _scan(self) -> dict[str, list[Record]]:
        """All records per split, in a fixed order (subclasses parse their layout here)."""

    @functools.cached_property
    def _scanned(self) -> dict[str, list[Record]]:
        return self._scan()

    @functools.cached_property
    def _records(self) -> dict[str, list[Record]]:
        records = self._scanned
        out = {}
        for i, (split, recs) in enumerate(records.items()):
            keep = subsample(len(recs), self.limit, self.seed + i)
            out[split] = [recs[j] for j in keep]
        return out

    def records(self, split: str) -> list[Record]:
        """The records :meth:`iter_blocks` decodes for ``split`` (after ``limit``)."""
        return self._records[self.check_split(split)]

    def splits(self) -> list[str]:
        return list(self._records)

    def split_size(self, split: str) -> int:
        return len(self.records(split))

    # Whether the data set (not only the ``limit`` subset) has boxes / masks, so that a
    # small subset gets the same store layout as the whole.
    def has_boxes(self) -> bool:
        return any(r.box is not None for rs in self._scanned.values() for r in rs)

    def has_masks(self) -> bool:
        return any(r.mask_path is not None for rs in self._scanned.values() for r in rs)

    def iter_blocks(self, split: str, block: int) -> Iterator[Block]:
        recs = self.records(split)
        masks, boxes = self.has_masks(), self.has_boxes()
        for start in range(0, len(recs), block):
            yield self._decode(recs[start : start + block], masks, boxes)

    def _decode(self, recs: list[Record], masks: bool, boxes: bool) -> Block:
        res, n = self.resolution, len(recs)
        out = Block(
            images=np.empty((n, 3, res, res), np.uint8),
            labels=np.array([r.label for r in recs], np.int64),
            masks=np.zeros((n, res, res), bool) if masks else None,
            has_mask=np.zeros(n, bool) if masks else None,
            boxes=np.zeros((n, 4), np.int16) if boxes else None,
        )
        for i, r in enumerate(recs):
            out.images[i], size = decode_image(r.path, res, self.fit)
            if masks and r.mask_path is not None:
                out.masks[i] = decode_mask(
                    r.mask_path, r.path, size, res, self.fit, type(self).mask_rule
                )
                out.has_mask[i] = True
            if boxes:
                if r.box is None:
                    raise DataError(f"image {r.path} has no box, but others of the data set do")
                out.boxes[i] = transform_box(r.box, size, res, self.fit, r.box_where)
        return out

    def source_signature(self) -> str:
        # The root itself is left out so that a moved copy of the same files matches.
        params = {k: v for k, v in self.params().items() if k != "root"}
        h = hashlib.sha256(repr(sorted(params.items())).encode())
        root = Path(self.root)
        for split, recs in self._records.items():
            h.update(split.encode())
            for r in recs:
                for p in (r.path, r.mask_path):
                    if p is not None:
                        st = p.stat() if p.exists() else None
                        rel = p.relative_to(root) if p.is_relative_to(root) else p
                        h.update(f"{rel}|{st and st.st_size}|{st and st.st_mtime_ns}".encode())
                h.update(f"{r.label}|{r.box}".encode())
        return h.hexdigest()

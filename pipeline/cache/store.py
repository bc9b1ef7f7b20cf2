"""Opening and reading the per-data-set Zarr store (docs/contracts.md, DESIGN.md section 3).

The store is written by :func:`pipeline.stages.prepare_data.run_prepare_data`; these functions read
it back. ``url`` may be a local path or any fsspec URL (``file://``, ``memory://``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import zarr

from pipeline.cache import layout
from pipeline.cache.bits import unpack_bits


@dataclass
class SplitArrays:
    """One split read into memory.

    Shape:
        images ``uint8 [N,C,H,W]``; labels ``int64 [N]``; masks ``bool [N,H,W]`` and
        has_mask ``bool [N]`` (None where the data set has no masks); bbox ``int16 [N,4]``
        (x0, y0, x1, y1) inclusive corners (None where it has no boxes).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = None
    has_mask: np.ndarray | None = None
    bbox: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _is_url(url: str | Path) -> bool:
    return isinstance(url, str) and "://" in url


def _exists(url: str | Path) -> bool:
    if _is_url(url):

        fs, path = fsspec.core.url_to_fs(str(url))
        return fs.exists(path.rstrip("/") + "/zarr.json")
    return (Path(url) / "zarr.json").is_file()


def open_store(url: str | Path, mode: str = "r") -> zarr.Group:
    """Open the data set store at ``url`` (path or fsspec URL).

    Args:
        url: the ``<dataset>.zarr`` location.
        mode: zarr mode; ``r`` (read), ``r+`` (read/write existing) or ``a``.

    Returns:
        The root group.

    Raises:
        FileNotFoundError: nothing (or no zarr group) at ``url``.
        ValueError: the store has another ``schema_version`` (or none: unfinished).
    """
    if mode not in ("r", "r+", "a"):
        raise ValueError(f"open_store mode must be r, r+ or a, not {mode!r}")
    if not _exists(url):
        raise FileNotFoundError(f"no data set store at {url} (run `salpipe prepare-data`)")
    group = zarr.open_group(str(url), mode=mode)
    version = group.attrs.get("schema_version")
    if version != layout.SCHEMA_VERSION:
        raise ValueError(
            f"store {url} has schema_version {version!r}, this salpipe reads "
            f"{layout.SCHEMA_VERSION}; rebuild it with `salpipe prepare-data --overwrite`"
        )
    return group


def store_info(store: zarr.Group | str | Path) -> dict:
    """The root attrs (dataset, classes, fingerprint, splits, resolution, mean, std, ...)."""
    group = store if isinstance(store, zarr.Group) else open_store(store)
    return dict(group.attrs)


def read_split(
    store: zarr.Group | str | Path, split: str, start: int = 0, stop: int | None = None
) -> SplitArrays:
    """Read ``split`` (optionally only samples ``start:stop``) into numpy arrays.

    Args:
        store: an open root group, or a path/URL passed to :func:`open_store`.
        split: ``train``, ``test`` or ``val``.
        start, stop: sample range (``stop=None``: to the end).

    Returns:
        :class:`SplitArrays` with masks unpacked to ``bool [N,H,W]``.
    """
    group = store if isinstance(store, zarr.Group) else open_store(store)
    if split not in group:
        raise KeyError(
            f"store has no split {split!r}; splits: {', '.join(group.attrs.get('splits', []))}"
        )
    sl = slice(start, stop)
    images = np.asarray(group[layout.images_path(split)][sl])
    labels = np.asarray(group[layout.labels_path(split)][sl]).astype(np.int64)
    out = SplitArrays(images=images, labels=labels)
    ann = group[split]
    if "annotations" in ann:
        names = set(ann["annotations"].array_keys())
        if "mask" in names:
            packed = np.asarray(group[layout.annotation_path(split, "mask")][sl])
            out.masks = unpack_bits(packed, tuple(images.shape[2:]))
            out.has_mask = np.asarray(group[layout.annotation_path(split, "has_mask")][sl])
        if "bbox" in names:
            out.bbox = np.asarray(group[layout.annotation_path(split, "bbox")][sl])
    return out

"""Saliency sources inside the Zarr cache: opening, creating, provenance, reading.

Per source group ``<split>/saliency/<source>/`` (docs/contracts.md):

- ``map``  float16 ``[N, C, H, W]`` (the raw map), chunks ``[B, C, H, W]``
- ``sign`` uint8 bit-packed ``[N, ceil(C*H*W/8)]`` (bit set where ``map > 0``)
- ``mask`` uint8 bit-packed ``[N, ceil(H*W/8)]`` (the salience mask)
- ``bbox`` int16 ``[N, 4]`` (box methods and ``annotation.bbox`` only)

``B`` is the chunk length of the split's ``images``, so one chunk index addresses the
same images in every array. Group attrs hold the provenance (:data:`PROVENANCE_KEYS`),
``created``, ``chunks_done`` (finished chunk indices), ``chunk_digests`` (sha256 of each
finished chunk's decoded arrays, for ``cache verify``) and ``complete``.

Creating a source writes its group, then its arrays, then (last) its attrs; the attrs
are the commit: a source group without provenance attrs and without finished chunks is
a creation cut short (a killed ``precompute-saliency``), which
:func:`unfinished_creation` recognises and ``precompute-saliency`` recreates.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline.cache import layout
from pipeline.cache.bits import packed_width, unpack_bits
from pipeline.cache.store import (
    _where,
    array_members,
    get_node,
    group_names,
    has_node,
    open_store,
    read_array,
)

KINDS = ("map", "sign", "mask", "bbox")
ANNOTATION = "annotation"  # origin of the weak-saliency sources annotation.mask/.bbox
# Attrs that define what a source holds; a stored source is reused only when all agree.
PROVENANCE_KEYS = (
    "method", "params", "target", "teacher", "teacher_sha256", "dataset_fingerprint",
    "schema_version",
)
# Attrs that are recorded but do not change the arrays' meaning.
RECORD_KEYS = ("salpipe_version", "batch_size", "teacher_dir", "created")


class ProvenanceMismatchError(ValueError):
    """A stored source was made from another teacher, data set, method, params or target."""


class NonFiniteSaliencyError(ValueError):
    """A saliency map holds NaN or inf (or exceeds float16); names the images."""


# Test hook: ``SALPIPE_TEST_PAUSE=<point>`` makes the process print
# ``SALPIPE_TEST_PAUSE <point>`` to stderr and sleep (``SALPIPE_TEST_PAUSE_SECONDS``, 600)
# at that point, so a test can SIGKILL it there. Points: ``source_group`` (source group
# written, no arrays yet), ``source_created`` (arrays written, provenance attrs not yet).
PAUSE_ENV = "SALPIPE_TEST_PAUSE"


def pause_point(point: str) -> None:
    """Pause here when the test hook names ``point`` (no-op otherwise)."""
    if os.environ.get(PAUSE_ENV) != point:
        return
    print(f"{PAUSE_ENV} {point}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get(f"{PAUSE_ENV}_SECONDS", "600")))


class MissingSourceError(KeyError, ValueError):
    """The asked-for saliency source is not in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _local_path(url: str) -> str:
    # file:// URLs go through zarr's LocalStore, whose writes are atomic (temp + rename).
    return url.removeprefix("file://")


def open_group(url: str, mode: str = "r") -> zarr.Group:
    """Open the data set store at ``url`` (path, ``file://``, ``memory://``, any fsspec URL).

    :func:`pipeline.cache.store.open_store`, with ``file://`` URLs opened as local paths
    (zarr's LocalStore writes atomically: temp file, then rename).

    Args:
        url: the ``<dataset>.zarr`` store written by ``salpipe prepare-data``.
        mode: ``"r"`` (read only) or ``"r+"`` (read and write saliency).

    Raises:
        FileNotFoundError: no store at ``url``.
        ValueError: the store has another schema version.
    """

    return open_store(_local_path(str(url)), mode)


def as_group(store: zarr.Group | str, mode: str = "r") -> zarr.Group:
    """``store`` itself when it is an open group, else :func:`open_group` of it."""
    return store if isinstance(store, zarr.Group) else open_group(store, mode)


def splits_of(group: zarr.Group) -> list[str]:
    """The store's splits (its ``splits`` attr, else its child groups)."""
    return list(group.attrs.get("splits") or group_names(group, ""))


def check_split(group: zarr.Group, split: str) -> None:
    """KeyError naming the store and its splits when ``split`` is not in it."""
    if not has_node(group, split):
        raise KeyError(f"split {split!r} not in store {_where(group)}; it has "
                       f"{splits_of(group)} (pass one of them as --split)")


def split_array(group: zarr.Group, split: str, name: str) -> zarr.Array:
    """``<split>/<name>`` with an error naming the split and what exists."""
    check_split(group, split)
    path = f"{split}/{name}"
    if not has_node(group, path):
        raise KeyError(f"store {_where(group)} has no {path} (split {split!r} is "
                       "incomplete; rebuild it with `salpipe prepare-data --overwrite`)")
    return get_node(group, path)


def list_sources(store: zarr.Group | str, split: str) -> list[str]:
    """Names of the saliency sources of ``split`` (complete or not), sorted."""
    group = as_group(store)
    path = f"{split}/saliency"
    if not has_node(group, path):
        return []
    return group_names(group, path)


def source_group(store: zarr.Group | str, split: str, source: str) -> zarr.Group:
    """The group of one source; :class:`MissingSourceError` lists the existing ones."""
    group = as_group(store)
    path = layout.saliency_group(split, source)
    check_split(group, split)
    if not has_node(group, path):
        raise MissingSourceError(
            f"saliency source {source!r} not in split {split!r} of store {_where(group)}; "
            f"it has {list_sources(group, split) or 'none'} (run salpipe precompute-saliency)"
        )
    return get_node(group, path)


def annotation_provenance(group: zarr.Group, kind: str) -> dict:
    """The provenance of ``annotation.<kind>``: fully determined by the store."""
    return {"method": kind, "params": {}, "target": None, "teacher": ANNOTATION,
            "teacher_sha256": None, "dataset_fingerprint": group.attrs.get("fingerprint"),
            "schema_version": layout.SCHEMA_VERSION}


def source_provenance(store: zarr.Group | str, split: str, source: str) -> dict:
    """All attrs of a source: provenance, ``created``, ``chunks_done``, ``complete``."""
    return dict(source_group(store, split, source).attrs)


def read_saliency(
    store: zarr.Group | str, split: str, source: str, kind: str = "map",
    *, unpack: bool = True, allow_incomplete: bool = False,
) -> np.ndarray:
    """Read one array of a source whole (CIFAR-scale caches fit in memory).

    Args:
        store: an open group or its URL.
        split, source: e.g. ``"train"``, ``"resnet10_adv.gbp"``.
        kind: ``map``, ``sign``, ``mask`` or ``bbox``.
        unpack: unpack ``sign``/``mask`` bits (else the raw packed uint8).
        allow_incomplete: read a source whose precompute has not finished.

    Returns:
        ``map`` float16 ``[N, C, H, W]``; ``sign`` bool ``[N, C, H, W]``; ``mask`` bool
        ``[N, H, W]``; ``bbox`` int16 ``[N, 4]`` (x0, y0, x1, y1) inclusive.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    grp = source_group(store, split, source)
    if not allow_incomplete and not grp.attrs.get("complete", False):
        done = len(grp.attrs.get("chunks_done", []))
        raise ValueError(
            f"saliency source {split}/{source} is incomplete ({done} chunks done); "
            "rerun salpipe precompute-saliency to finish it"
        )
    if not has_node(grp, kind):
        raise MissingSourceError(f"saliency source {split}/{source} has no {kind!r} array")
    data = read_array(get_node(grp, kind))
    if not unpack or kind in ("map", "bbox"):
        return data
    c, h, w = grp["map"].shape[1:]
    return unpack_bits(data, (c, h, w) if kind == "sign" else (h, w))


def provenance_differences(stored: dict, wanted: dict) -> list[str]:
    """Human-readable ``key: stored -> wanted`` lines for every differing provenance key."""
    out = []
    for key in PROVENANCE_KEYS:
        if _canon(stored.get(key)) != _canon(wanted.get(key)):
            out.append(f"{key}: stored {stored.get(key)!r}, asked {wanted.get(key)!r}")
    return out


def _canon(value: Any) -> Any:
    # JSON round trips turn tuples into lists; compare the JSON shape.
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    return value


def create_source(
    group: zarr.Group, split: str, source: str, *, shape: tuple[int, int, int, int],
    chunk: int, with_bbox: bool, attrs: dict,
) -> zarr.Group:
    """Create an empty source group with its arrays (chunks aligned with the images').

    Empty chunks are written too (``write_empty_chunks``), so a missing chunk file always
    means lost data, which ``cache verify`` reports.
    """

    n, c, h, w = shape
    grp = group.require_group(layout.saliency_group(split, source))
    pause_point("source_group")
    comp = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    # overwrite: arrays left by an interrupted delete of a group that no longer exists
    kw = {"compressors": comp, "config": {"write_empty_chunks": True}, "overwrite": True}
    grp.create_array("map", shape=shape, chunks=(chunk, c, h, w), dtype="float16",
                     fill_value=0, **kw)
    for name, width in (("sign", packed_width((c, h, w))), ("mask", packed_width((h, w)))):
        grp.create_array(name, shape=(n, width), chunks=(chunk, width), dtype="uint8",
                         fill_value=0, **kw)
    if with_bbox:
        grp.create_array("bbox", shape=(n, 4), chunks=(chunk, 4), dtype="int16",
                         fill_value=-1, **kw)
    pause_point("source_created")
    # the attrs last, in one atomic write of the group's zarr.json: the commit
    grp.update_attributes({**attrs, "chunks_done": [], "chunk_digests": {}, "complete": False})
    return grp


def unfinished_creation(grp: zarr.Group) -> bool:
    """True for a source group whose creation was cut short (:func:`create_source` killed
    before it wrote the attrs): no provenance attrs, no finished chunk recorded, and no
    chunk written in any of its arrays. Such a group holds nothing and may be recreated;
    any group with provenance or data is never taken for one."""
    attrs = dict(grp.attrs)
    if any(k in attrs for k in PROVENANCE_KEYS) or attrs.get("chunks_done") \
            or attrs.get("chunk_digests") or attrs.get("complete"):
        return False
    return all(arr.nchunks_initialized == 0 for arr in array_members(grp).values())


def chunk_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the decoded arrays of one chunk, in :data:`KINDS` order."""
    h = hashlib.sha256()
    for kind in KINDS:
        if kind in arrays:
            a = np.ascontiguousarray(arrays[kind])
            h.update(f"{kind}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def read_chunk(grp: zarr.Group, index: int) -> dict[str, np.ndarray]:
    """The decoded arrays of chunk ``index`` of a source group."""
    b = grp["map"].chunks[0]
    sl = slice(index * b, min((index + 1) * b, grp["map"].shape[0]))
    return {k: read_array(get_node(grp, k), sl) for k in KINDS if has_node(grp, k)}


def chunk_count(n: int, chunk: int) -> int:
    """Number of chunks of length ``chunk`` covering ``n`` items."""
    return (n + chunk - 1) // chunk

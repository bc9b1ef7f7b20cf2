"""Saliency sources of a split as stream extras: checked up front, read lazily.

A stage-two method names sources (``--saliency resnet10_adv.gbp``). Before any training
:func:`check_sources` makes sure the store holds every one of them, complete and made
from this data set (all missing ones named at once); :func:`open_sources` then gives a
reader per source: ``read(start, stop)`` returning the source's ``map`` (float16
``[n, C, H, W]``, after the method's ``prepare_saliency``, e.g. SAT's ``sign``) or its
``mask`` (bool ``[n, 1, H, W]``). Memory streams read everything once, chunk streams
(:mod:`pipeline.cache.stream_chunks`) one chunk at a time; both get their readers from
:func:`open_extras`, which checks every source once.

Annotation sources (``annotation.mask`` / ``annotation.bbox``: the weak saliency of
paper 000 Eq. 10 as map, the object region as mask) are cached like any other source
(``salpipe precompute-saliency --source annotation.mask``), so they carry provenance too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.cache import layout
from pipeline.cache.bits import unpack_bits
from pipeline.cache.saliency_store import MissingSourceError, as_group, list_sources

log = logging.getLogger(__name__)

KINDS = ("map", "mask")


@dataclass
class ExtraSource:
    """One source ready for a stream.

    Args:
        name: source name. kind: ``map`` or ``mask``. read: ``(start, stop) -> array``
        (float16 ``[n, C, H, W]`` maps or bool ``[n, 1, H, W]`` masks). provenance: the
        source's attrs. nbytes: size of the whole array.
    """

    name: str
    kind: str
    read: Callable[[int, int], np.ndarray]
    provenance: dict
    nbytes: int


def check_sources(group, split: str, names: Sequence[str]) -> None:
    """Fail before training when any source is missing, incomplete or of another data set.

    Raises:
        MissingSourceError: naming every missing source and listing the stored ones.
        ValueError: a source is incomplete or was made from another data set.
    """
    if len(set(names)) != len(names):
        raise ValueError(f"saliency source given twice: {list(names)}")
    stored = list_sources(group, split)
    for name in names:
        layout.check_source(name)
    missing = [n for n in names if n not in stored]
    if missing:
        raise MissingSourceError(
            f"store lacks saliency source(s) {', '.join(missing)} in split {split!r}; it has "
            f"{', '.join(stored) or 'none'} (run salpipe precompute-saliency first)")
    fp = group.attrs.get("fingerprint")
    for name in names:
        attrs = dict(group[layout.saliency_group(split, name)].attrs)
        if not attrs.get("complete", False):
            raise ValueError(f"saliency source {split}/{name} is incomplete "
                             f"({len(attrs.get('chunks_done', []))} chunks done); rerun "
                             "salpipe precompute-saliency to finish it")
        if fp and attrs.get("dataset_fingerprint") not in (None, fp):
            raise ValueError(f"saliency source {split}/{name} was made from another data set "
                             f"(fingerprint {attrs.get('dataset_fingerprint')} != {fp})")


def _reader(arr, kind: str, hw: tuple[int, int], prepare, name: str):
    """``(start, stop) -> array`` over one stored array (maps through ``prepare``)."""

    def read(a: int, b: int) -> np.ndarray:
        if kind == "mask":
            return unpack_bits(np.asarray(arr[a:b]), hw)[:, None]
        m = np.asarray(arr[a:b])
        return m if prepare is None else prepare(name, m)

    return read


def open_sources(group, split: str, names: Sequence[str], kind: str,
                 prepare: Callable[[str, np.ndarray], np.ndarray] | None = None,
                 ) -> list[ExtraSource]:
    """Readers for ``names`` (checked first with :func:`check_sources`).

    Args:
        group: the open store. split: e.g. ``train``. names: source names.
        kind: ``map`` or ``mask``. prepare: the method's per-array transform of maps
            (``method.prepare_saliency``), applied to every read; None keeps the map.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    group = as_group(group)
    check_sources(group, split, names)
    return _open(group, split, names, kind, prepare)


def open_extras(group, split: str, maps: Sequence[str], masks: Sequence[str],
                prepare: Callable[[str, np.ndarray], np.ndarray] | None = None,
                ) -> tuple[list[ExtraSource], list[ExtraSource]]:
    """``(map readers, mask readers)`` of a training run, all names checked once.

    The one reader of cached sources for every stream mode: the memory stream reads each
    whole (:func:`read_all`), the chunk stream a chunk at a time.
    """
    group = as_group(group)
    for names in (maps, masks):
        if len(set(names)) != len(names):
            raise ValueError(f"saliency source given twice: {list(names)}")
    # a source may be read both as a map and as a mask; it is checked once
    check_sources(group, split, list(dict.fromkeys([*maps, *masks])))
    return (_open(group, split, maps, "map", prepare),
            _open(group, split, masks, "mask", None))


def _open(group, split: str, names: Sequence[str], kind: str, prepare) -> list[ExtraSource]:
    if not names:
        return []
    shape = tuple(group[layout.images_path(split)].shape)
    n, c, h, w = shape
    out = []
    for name in names:
        grp = group[layout.saliency_group(split, name)]
        prov = dict(grp.attrs)
        arr = grp["map" if kind == "map" else "mask"]
        if arr.shape[0] != n:
            raise ValueError(f"saliency source {split}/{name} has {arr.shape[0]} images; "
                             f"split {split!r} has {n}")
        read = _reader(arr, kind, (h, w), prepare, name)
        nbytes = n * (c * h * w * 2 if kind == "map" else h * w)
        out.append(ExtraSource(name, kind, read, prov, nbytes))
        log.info("saliency source %s/%s (%s, %.1f MB)", split, name, kind, nbytes / 1e6)
    return out


def read_all(sources: Sequence[ExtraSource], n: int) -> dict[str, np.ndarray]:
    """Every source's whole array (for the memory stream)."""
    return {s.name: s.read(0, n) for s in sources}


"""Saliency sources of a split as stream extras: checked up front, read lazily.

A stage-two method names sources (``--saliency resnet10_adv.gbp``). Before any training
:func:`check_sources` makes sure the store holds every one of them, complete and made
from this data set (all missing ones named at once); :func:`open_sources` then gives a
reader per source: ``read(start, stop)`` returning the source's ``map`` (float16
``[n, C, H, W]``, after the method's ``prepare_saliency``, e.g. SAT's ``sign``) or its
``mask`` (bool ``[n, 1, H, W]``). Memory streams read everything once, chunk streams
(:mod:`pipeline.cache.stream_chunks`) one chunk at a time; both get their readers from
:func:`open_extras`, which checks every source once.

Every read refuses NaN and inf (:class:`NonFiniteSaliencyError`, naming the store,
split, source and the first image indices): a vectorised ``np.isfinite`` over what was
just decoded, so the memory stream checks everything once at start and the chunk stream
each chunk as it reads it. Nothing non-finite reaches a training method.

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
from pipeline.cache.saliency_store import (
    MissingSourceError,
    NonFiniteSaliencyError,
    as_group,
    check_split,
    list_sources,
)
from pipeline.cache.store import _where, get_node, has_node, read_array

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
    check_split(group, split)
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
        attrs = dict(get_node(group, layout.saliency_group(split, name)).attrs)
        if not attrs.get("complete", False):
            raise ValueError(f"saliency source {split}/{name} is incomplete "
                             f"({len(attrs.get('chunks_done', []))} chunks done); rerun "
                             "salpipe precompute-saliency to finish it")
        if fp and attrs.get("dataset_fingerprint") not in (None, fp):
            raise ValueError(f"saliency source {split}/{name} was made from another data set "
                             f"(fingerprint {attrs.get('dataset_fingerprint')} != {fp})")


def _finite(x: np.ndarray) -> np.ndarray:
    # float16 (the stored maps): exponent bits all set is inf or NaN; twice as fast as
    # np.isfinite, which converts every element
    if x.dtype == np.float16 and x.flags.c_contiguous:
        return (x.view(np.uint16) & 0x7C00) != 0x7C00
    return np.isfinite(x)


def check_finite(data: np.ndarray, start: int, what: str, most: int = 10) -> np.ndarray:
    """``data`` (rows = images ``start, start+1, ...``) unchanged when every value is
    finite, else :class:`NonFiniteSaliencyError` naming ``what`` and the first images."""
    if data.dtype.kind not in "fc" or data.size == 0:
        return data
    flat = data.reshape(data.shape[0], -1)
    step = max(1, (1 << 24) // max(flat.shape[1], 1))  # bounds the bool temporary
    bad = [np.flatnonzero(~_finite(flat[i:i + step]).all(1)) + i
           for i in range(0, flat.shape[0], step)]
    idx = (np.concatenate(bad) + start).tolist()
    if not idx:
        return data
    more = f" ... ({len(idx)} images in all)" if len(idx) > most else ""
    raise NonFiniteSaliencyError(
        f"{what} holds NaN or inf for image indices {idx[:most]}{more}; refusing to train "
        "on it. Recompute the source (salpipe precompute-saliency --overwrite with the "
        "same --teacher/--method; salpipe cache verify shows whether the stored chunks "
        "are damaged)")


def _reader(arr, kind: str, hw: tuple[int, int], prepare, name: str, where: str):
    """``(start, stop) -> array`` over one stored array (maps through ``prepare``);
    every read is checked for NaN/inf."""

    def read(a: int, b: int) -> np.ndarray:
        raw = read_array(arr, slice(a, b))
        if kind == "mask":
            return unpack_bits(raw, hw)[:, None]
        check_finite(raw, a, where)
        if prepare is None:
            return raw
        out = np.asarray(prepare(name, raw))
        return check_finite(out, a, f"{where} after the method's prepare_saliency")

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
    shape = tuple(get_node(group, layout.images_path(split)).shape)
    n, c, h, w = shape
    out = []
    for name in names:
        grp = get_node(group, layout.saliency_group(split, name))
        prov = dict(grp.attrs)
        where = f"saliency source {split}/{name} of store {_where(group)}"
        array = "map" if kind == "map" else "mask"
        if not has_node(grp, array):
            raise MissingSourceError(
                f"{where} has no {array!r} array; recompute it with salpipe "
                "precompute-saliency --overwrite")
        arr = get_node(grp, array)
        if arr.shape[0] != n:
            raise ValueError(f"{where} has {arr.shape[0]} images; split {split!r} has {n} "
                             "(recompute it with salpipe precompute-saliency --overwrite)")
        read = _reader(arr, kind, (h, w), prepare, name, where)
        nbytes = n * (c * h * w * 2 if kind == "map" else h * w)
        out.append(ExtraSource(name, kind, read, prov, nbytes))
        log.info("saliency source %s/%s (%s, %.1f MB)", split, name, kind, nbytes / 1e6)
    return out


def read_all(sources: Sequence[ExtraSource], n: int) -> dict[str, np.ndarray]:
    """Every source's whole array (for the memory stream)."""
    return {s.name: s.read(0, n) for s in sources}


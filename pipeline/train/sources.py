"""Saliency sources of a split as stream extras: checked, read, transformed, provenance.

A stage-two method names sources (``--saliency resnet10_adv.gbp``). Before any training
this module checks that the store holds every one of them (complete, made from this data
set), and then hands the stream a reader per source: ``read(start, stop)`` returning the
source's ``map`` (float16 ``[n, C, H, W]``, after the method's own transform, e.g. SAT's
``sign``) or its ``mask`` (bool ``[n, 1, H, W]``), whichever the method consumes
(``method.saliency_kind``). Memory streams read everything once; chunk streams read one
chunk at a time.

``annotation.mask`` / ``annotation.bbox`` are read from the cache when a precompute wrote
them, else derived from the split's own annotations: as maps they are the weak saliency
of paper 000 Eq. 10 (+1 on the object, -1 elsewhere; 0 for images without a mask), as
masks the human masks of paper 002 (images without one get an empty mask, i.e. are
perturbed everywhere, as SIP-AT's unannotated images).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from pipeline.cache import layout
from pipeline.cache.bits import unpack_bits

log = logging.getLogger(__name__)

KINDS = ("map", "mask")
ANNOTATION_SOURCES = {"annotation.mask": "mask", "annotation.bbox": "bbox"}


@dataclass
class ExtraSource:
    """One source ready for a stream.

    Args:
        name: source name. kind: ``map`` or ``mask``. read: ``(start, stop) -> array``
        (float16 ``[n, C, H, W]`` maps or bool ``[n, 1, H, W]`` masks). provenance: the
        source's attrs (or how it was derived). nbytes: size of the whole array.
    """

    name: str
    kind: str
    read: Callable[[int, int], np.ndarray]
    provenance: dict
    nbytes: int


def saliency_kind(method: Any) -> str:
    """What a method reads from its sources: ``map`` (batch.saliency) or ``mask``."""
    kind = getattr(method, "saliency_kind", "map")
    if kind not in KINDS:
        raise ValueError(f"{type(method).__name__}.saliency_kind must be one of {KINDS}")
    return kind


def _derived_annotation(group, split: str, name: str) -> bool:
    ann = f"{split}/annotations/{ANNOTATION_SOURCES.get(name, '')}"
    return name in ANNOTATION_SOURCES and ann in group


def check_sources(group, split: str, names: Sequence[str]) -> None:
    """Fail before training when any source is missing, incomplete or of another data set.

    Raises:
        MissingSourceError: naming every missing source and listing the stored ones.
        ValueError: a source is incomplete or was made from another data set.
    """
    from pipeline.cache.saliency_store import MissingSourceError, list_sources

    if len(set(names)) != len(names):
        raise ValueError(f"saliency source given twice: {list(names)}")
    stored = list_sources(group, split)
    for name in names:
        layout.check_source(name)
    missing = [n for n in names if n not in stored and not _derived_annotation(group, split, n)]
    if missing:
        raise MissingSourceError(
            f"store lacks saliency source(s) {', '.join(missing)} in split {split!r}; it has "
            f"{', '.join(stored) or 'none'} (run salpipe precompute-saliency first)")
    fp = group.attrs.get("fingerprint")
    for name in names:
        if name not in stored:
            continue
        attrs = dict(group[layout.saliency_group(split, name)].attrs)
        if not attrs.get("complete", False):
            raise ValueError(f"saliency source {split}/{name} is incomplete "
                             f"({len(attrs.get('chunks_done', []))} chunks done); rerun "
                             "salpipe precompute-saliency to finish it")
        if fp and attrs.get("dataset_fingerprint") not in (None, fp):
            raise ValueError(f"saliency source {split}/{name} was made from another data set "
                             f"(fingerprint {attrs.get('dataset_fingerprint')} != {fp})")


def _annotation_reader(group, split: str, name: str, kind: str, shape) -> Callable:
    from pipeline.saliency.annotations import box_masks

    n, c, h, w = shape
    what = ANNOTATION_SOURCES[name]

    def masks(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """bool ``[n, H, W]`` object masks and bool ``[n]`` "has an annotation"."""
        if what == "bbox":
            boxes = torch.as_tensor(np.asarray(group[layout.annotation_path(split, "bbox")][a:b]))
            return box_masks(boxes.long(), h, w).numpy(), np.ones(b - a, bool)
        m = unpack_bits(np.asarray(group[layout.annotation_path(split, "mask")][a:b]), (h, w))
        has_path = layout.annotation_path(split, "has_mask")
        has = np.asarray(group[has_path][a:b]) if has_path in group else np.ones(b - a, bool)
        return m & has[:, None, None], has

    def read(a: int, b: int) -> np.ndarray:
        m, has = masks(a, b)
        if kind == "mask":
            return m[:, None]
        s = (m.astype(np.float16) * 2 - 1) * has[:, None, None].astype(np.float16)
        return np.ascontiguousarray(np.broadcast_to(s[:, None], (len(s), c, h, w)))

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
    check_sources(group, split, names)
    from pipeline.cache.saliency_store import list_sources

    stored = set(list_sources(group, split))
    shape = tuple(group[layout.images_path(split)].shape)
    n, c, h, w = shape
    out = []
    for name in names:
        if name in stored:
            grp = group[layout.saliency_group(split, name)]
            prov = dict(grp.attrs)
            arr = grp["map" if kind == "map" else "mask"]
            if arr.shape[0] != n:
                raise ValueError(f"saliency source {split}/{name} has {arr.shape[0]} images; "
                                 f"split {split!r} has {n}")
            if kind == "map":
                read = (lambda arr: lambda a, b: np.asarray(arr[a:b]))(arr)
                nbytes = int(np.prod(arr.shape)) * 2
            else:
                read = (lambda arr: lambda a, b: unpack_bits(np.asarray(arr[a:b]),
                                                             (h, w))[:, None])(arr)
                nbytes = n * h * w
        else:
            prov = {"method": "annotation", "derived_from":
                    layout.annotation_path(split, ANNOTATION_SOURCES[name]),
                    "dataset_fingerprint": group.attrs.get("fingerprint"),
                    "rule": "paper 000 Eq. 10" if kind == "map" else "human mask"}
            read = _annotation_reader(group, split, name, kind, shape)
            nbytes = n * (c * h * w * 2 if kind == "map" else h * w)
        if kind == "map" and prepare is not None:
            read = (lambda r, nm: lambda a, b: prepare(nm, r(a, b)))(read, name)
        out.append(ExtraSource(name, kind, read, prov, nbytes))
        log.info("saliency source %s/%s (%s, %.1f MB)", split, name, kind, nbytes / 1e6)
    return out


def read_all(sources: Sequence[ExtraSource], n: int) -> dict[str, np.ndarray]:
    """Every source's whole array (for the memory stream)."""
    return {s.name: s.read(0, n) for s in sources}


STREAM_MODES = ("auto", "memory", "chunks")


def open_method_sources(group, split: str, method: Any, saliency: Sequence[str] = (),
                        masks_from: Sequence[str] = ()
                        ) -> tuple[list[ExtraSource], list[ExtraSource], dict]:
    """The readers a training method needs, checked before anything is trained.

    ``saliency`` sources go where the method reads them (``method.saliency_kind``:
    maps into ``batch.saliency`` after ``method.prepare_saliency``, masks into
    ``batch.masks``); ``masks_from`` are always read as masks.

    Returns:
        ``(map sources, mask sources, provenance per source name)``.

    Raises:
        ValueError: the method needs saliency and none was given.
        MissingSourceError: a named source is not in the store (all missing named).
    """
    if getattr(method, "needs_saliency", False) and not (saliency or masks_from):
        raise ValueError(f"method {type(method).__name__} needs saliency sources "
                         "(--saliency SOURCE); none given")
    kind = saliency_kind(method)
    check_sources(group, split, list(saliency) + [m for m in masks_from if m not in saliency])
    prepare = getattr(method, "prepare_saliency", None)
    maps = open_sources(group, split, saliency, "map", prepare) if kind == "map" else []
    masks = open_sources(group, split, saliency, "mask") if kind == "mask" else []
    masks += open_sources(group, split, masks_from, "mask")
    prov = {s.name: s.provenance for s in maps + masks}
    return maps, masks, prov


def build_stream(group, split: str, maps: Sequence[ExtraSource],
                 masks: Sequence[ExtraSource], *, batch_size: int, seed: int,
                 device: torch.device, aug, drop_last: bool, mode: str = "auto"):
    """The training stream of ``split`` with the sources as extras.

    ``mode``: ``memory`` (arrays resident on ``device``), ``chunks``
    (:class:`~pipeline.cache.stream_chunks.ChunkStream`) or ``auto`` (memory when images
    plus extras fit, :func:`~pipeline.cache.stream_chunks.choose_stream_mode`).

    Returns:
        ``(stream, mode used)``.
    """
    from pipeline.cache.stream import MemoryStream, read_split_arrays
    from pipeline.cache.stream_chunks import build_chunk_stream, choose_stream_mode

    if mode not in STREAM_MODES:
        raise ValueError(f"stream mode must be one of {STREAM_MODES}, not {mode!r}")
    images = group[layout.images_path(split)]
    n = int(images.shape[0])
    if mode == "auto":
        nbytes = int(np.prod(images.shape)) + sum(s.nbytes for s in [*maps, *masks])
        mode = choose_stream_mode(nbytes, device)
    kw = {"batch_size": batch_size, "seed": seed, "device": device, "aug": aug,
          "drop_last": drop_last}
    if mode == "memory":
        x, y = read_split_arrays(group, split)
        stream = MemoryStream(x, y, saliency=read_all(maps, n), masks=read_all(masks, n), **kw)
    else:
        stream = build_chunk_stream(group, split, sources={s.name: s.read for s in maps},
                                    masks={s.name: s.read for s in masks}, **kw)
    log.info("training stream: %s mode, %d images, %d map(s), %d mask(s)", mode, n,
             len(maps), len(masks))
    return stream, mode

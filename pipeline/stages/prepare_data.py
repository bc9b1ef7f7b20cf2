"""``run_prepare_data``: write a data set into its Zarr store (docs/contracts.md, DESIGN.md 3).

The store is written into a temporary sibling and renamed into place at the end, so an
error never leaves a half-written store behind. Blocks are streamed: at most one block of
decoded images is in memory. A store that already holds the same data set with the same
parameters and source files is left alone (the run says so), unless ``overwrite``.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import shutil
import time
from pathlib import Path

import fsspec
import numpy as np
import zarr
from tqdm import tqdm

import pipeline
from pipeline.cache import layout
from pipeline.cache.bits import pack_bits, packed_width
from pipeline.data import DATASETS
from pipeline.data.base import Block, DataError, DatasetAdapter
from pipeline.data.fingerprint import SplitHasher, dataset_fingerprint

log = logging.getLogger(__name__)

# Attrs that must match for an existing store to count as up to date.
_SAME = ("schema_version", "dataset", "chunk", "source_signature")


def dataset_name(cfg: DatasetAdapter) -> str:
    """The registry name of ``cfg``'s class."""
    for name in DATASETS.names():
        if DATASETS.get(name) is type(cfg):
            return name
    raise ValueError(f"{type(cfg).__name__} is not a registered data set")


def _comparable_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "root"}


def _fs(out: str | Path) -> tuple[fsspec.AbstractFileSystem, str, bool]:
    """(filesystem, path on it, is_local) for a path or fsspec URL."""
    fs, path = fsspec.core.url_to_fs(str(out))
    local = isinstance(fs, fsspec.implementations.local.LocalFileSystem)
    return fs, path.rstrip("/"), local


def _blosc() -> list:
    return [zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")]


def _arrays(group: zarr.Group, n: int, res: int, chunk: int, masks: bool, boxes: bool):
    spec = {"images": ((n, 3, res, res), "uint8"), "labels": ((n,), "int16")}
    if masks:
        spec["annotations/mask"] = ((n, packed_width((res, res))), "uint8")
        spec["annotations/has_mask"] = ((n,), "bool")
    if boxes:
        spec["annotations/bbox"] = ((n, 4), "int16")
    return {
        name: group.create_array(name, shape=shape, dtype=dtype, compressors=_blosc(),
                                 chunks=(chunk, *shape[1:]), fill_value=0)
        for name, (shape, dtype) in spec.items()
    }


def _block_arrays(b: Block, k: int) -> dict[str, np.ndarray]:
    out = {"images": b.images, "labels": b.labels.astype(np.int16)}
    if b.masks is not None:
        out["annotations/mask"] = pack_bits(b.masks)
        out["annotations/has_mask"] = b.has_mask.astype(bool)
    if b.boxes is not None:
        out["annotations/bbox"] = b.boxes.astype(np.int16)
    return out


def _write_split(root: zarr.Group, cfg: DatasetAdapter, split: str, chunk: int, k: int):
    """Stream one split into ``root[split]``; returns (fingerprint, n, channel sums)."""
    n, res = cfg.split_size(split), cfg.resolution
    if n == 0:
        raise DataError(f"split {split!r} of {dataset_name(cfg)} has no images")
    arrays = _arrays(root.create_group(split), n, res, chunk, cfg.has_masks(), cfg.has_boxes())
    hasher, pos = SplitHasher(), 0
    sums = np.zeros((2, 3), np.float64)
    for block in tqdm(cfg.iter_blocks(split, chunk), total=math.ceil(n / chunk),
                      desc=f"{split}", unit="block", leave=False):
        if block.images.shape[1:] != (3, res, res):
            raise DataError(
                f"{split}: block images {block.images.shape}, expected [B,3,{res},{res}]")
        bad = (block.labels < 0) | (block.labels >= k)
        if bad.any():
            raise DataError(f"{split}: label {block.labels[bad][0]} outside 0..{k - 1}")
        for name, arr in _block_arrays(block, k).items():
            arrays[name][pos : pos + len(block)] = arr
            hasher.update(name, arr)
        x = block.images.astype(np.float64) / 255
        sums += [x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))]
        pos += len(block)
    if pos != n:
        raise DataError(f"{split}: adapter yielded {pos} images, announced {n}")
    fp = hasher.hexdigest()
    root[split].attrs.update({"fingerprint": fp, "n": n, "chunk": chunk})
    return fp, n, sums / (n * res * res)


def _write(cfg: DatasetAdapter, url: str, chunk: int, signature: str) -> dict:
    root = zarr.open_group(url, mode="w")
    classes, fps, sizes = cfg.classes(), {}, {}
    moments = None
    for split in cfg.splits():
        t = time.perf_counter()
        fps[split], sizes[split], m = _write_split(root, cfg, split, chunk, len(classes))
        moments = m if split == "train" or moments is None else moments
        log.info("wrote %s: %d images in %.1f s", split, sizes[split], time.perf_counter() - t)
    mean, sq = moments
    attrs = {
        "dataset": dataset_name(cfg), "classes": classes, "num_classes": len(classes),
        "fingerprint": dataset_fingerprint(fps, classes), "splits": list(cfg.splits()),
        "resolution": [cfg.resolution, cfg.resolution], "channels": 3,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in np.sqrt(np.maximum(sq - mean**2, 0))],
        "params": cfg.params(), "chunk": chunk, "source_signature": signature,
        "has_masks": cfg.has_masks(), "has_boxes": cfg.has_boxes(), "split_sizes": sizes,
        "salpipe_version": pipeline.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    # schema_version goes in last: a store without it is unfinished and open_store refuses it.
    root.attrs.update(attrs)
    root.attrs["schema_version"] = layout.SCHEMA_VERSION
    return {**attrs, "schema_version": layout.SCHEMA_VERSION}


def _disk_bytes(fs: fsspec.AbstractFileSystem, path: str) -> int:
    try:
        return int(fs.du(path, total=True))
    except (OSError, NotImplementedError):
        return -1


def _summary(attrs: dict, out, seconds: float, nbytes: int, skipped: bool) -> dict:
    keys = ("dataset", "fingerprint", "split_sizes", "classes", "mean", "std", "resolution")
    return {"store": str(out), **{k: attrs.get(k) for k in keys},
            "seconds": round(seconds, 3), "bytes": nbytes, "skipped": skipped}


def run_prepare_data(
    dataset_cfg: DatasetAdapter,
    out: str | Path,
    chunk: int = layout.DEFAULT_CHUNK,
    overwrite: bool = False,
) -> dict:
    """Write ``dataset_cfg``'s splits into the Zarr store ``out`` (path or fsspec URL).

    Args:
        dataset_cfg: a registered data set config (``build_method(DATASETS, ...)``).
        out: the ``<dataset>.zarr`` store to write.
        chunk: images per chunk along N.
        overwrite: replace an existing store (also one with other parameters).

    Returns:
        Summary: store, dataset, fingerprint, split_sizes, classes, mean, std, resolution,
        seconds, bytes (on disk, -1 if unknown), skipped (True when already up to date).

    Raises:
        FileExistsError: ``out`` holds a different store and ``overwrite`` is False.
        DataError: bad input data (the message names the file).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    t0 = time.perf_counter()
    fs, path, local = _fs(out)
    name = dataset_name(dataset_cfg)
    signature = dataset_cfg.source_signature()
    want = {"schema_version": layout.SCHEMA_VERSION, "dataset": name, "chunk": chunk,
            "source_signature": signature}
    if fs.exists(path) and not overwrite:
        have = dict(zarr.open_group(str(out), mode="r").attrs) if fs.exists(
            path + "/zarr.json") else {}
        diff = [k for k in _SAME if have.get(k) != want[k]]
        if _comparable_params(have.get("params", {})) != _comparable_params(
                dataset_cfg.params()):
            diff.append("params")
        if not diff:
            log.info("%s is up to date (dataset %s, fingerprint %s); nothing to do",
                     out, name, have["fingerprint"][:12])
            return _summary(have, out, time.perf_counter() - t0, _disk_bytes(fs, path), True)
        raise FileExistsError(
            f"{out} already exists and differs in {', '.join(diff)}; "
            "pass --overwrite (overwrite=True) to replace it"
        )
    log.info("preparing %s from %s: splits %s, resolution %d, chunk %d", name,
             getattr(dataset_cfg, "root", "(generated)"),
             {s: dataset_cfg.split_size(s) for s in dataset_cfg.splits()},
             dataset_cfg.resolution, chunk)
    tmp = f"{path}.tmp-{os.getpid()}"
    tmp_url = tmp if local else fs.unstrip_protocol(tmp)
    try:
        attrs = _write(dataset_cfg, tmp_url, chunk, signature)
        _commit(fs, tmp, path, local)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)
        raise
    seconds, nbytes = time.perf_counter() - t0, _disk_bytes(fs, path)
    log.info("wrote %s (%.1f MB, fingerprint %s) in %.1f s", out, nbytes / 1e6,
             attrs["fingerprint"][:12], seconds)
    return _summary(attrs, out, seconds, nbytes, False)


def _commit(fs: fsspec.AbstractFileSystem, tmp: str, path: str, local: bool) -> None:
    """Move the finished ``tmp`` store to ``path`` (replacing an old one)."""
    if not local:
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.mv(tmp, path, recursive=True)
        return
    old = None
    if os.path.exists(path):
        old = f"{path}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old)

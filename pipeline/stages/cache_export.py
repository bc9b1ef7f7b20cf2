"""``salpipe cache export``: the whole store (or one split/source) as one HDF5 file.

Every Zarr array becomes an HDF5 dataset of the same path, dtype, shape and chunking
(gzip-compressed); every group's and array's attrs are copied, each value JSON-encoded
(HDF5 attrs cannot hold nested mappings or None), so ``json.loads`` gives back exactly
the Zarr attrs. The file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import zarr

from pipeline.cache import layout
from pipeline.cache.saliency_store import (
    MissingSourceError,
    check_split,
    list_sources,
    open_group,
    splits_of,
)
from pipeline.cache.store import StoreError, _where, read_array
from pipeline.core.io import atomic_path

log = logging.getLogger(__name__)


def _wanted(path: str, split: str | None, source: str | None) -> bool:
    parts = path.split("/")
    if split and parts[0] != split:
        return False
    if source and len(parts) >= 2 and parts[1] == "saliency":
        return len(parts) < 3 or parts[2] == source
    return True


def _copy_attrs(src, dst) -> None:
    for key, value in src.attrs.items():
        dst.attrs[key] = json.dumps(value, sort_keys=True)


def _copy_array(arr: zarr.Array, h5, path: str) -> None:
    # HDF5 chunks may not exceed the data (a split smaller than one Zarr chunk)
    chunks = tuple(min(c, s) for c, s in zip(arr.chunks, arr.shape))
    if not chunks or 0 in chunks:
        ds = h5.create_dataset(path, shape=arr.shape, dtype=arr.dtype)
    else:
        ds = h5.create_dataset(path, shape=arr.shape, dtype=arr.dtype, chunks=chunks,
                               compression="gzip", compression_opts=1)
    step = max(arr.chunks[0], 1) if arr.chunks else 1
    if not arr.shape:
        ds[()] = read_array(arr, ())
    for start in range(0, arr.shape[0] if arr.shape else 0, step):
        ds[start:start + step] = read_array(arr, slice(start, start + step))
    _copy_attrs(arr, ds)


def _members(group: zarr.Group):
    try:
        return sorted(group.arrays()), sorted(group.groups())
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  (json / zarr metadata errors)
        raise StoreError(
            f"cannot read the members of {_where(group)}: a zarr.json below it is damaged "
            f"({type(e).__name__}: {e}); `salpipe cache verify` and `salpipe cache info` "
            "show which source, recompute it with `salpipe precompute-saliency "
            "--overwrite`") from e


def _walk(group: zarr.Group, prefix: str = ""):
    arrays, groups = _members(group)
    for name, arr in arrays:
        yield f"{prefix}{name}", arr
    for name, sub in groups:
        yield f"{prefix}{name}", sub
        yield from _walk(sub, f"{prefix}{name}/")


def _check_wanted(group: zarr.Group, store: str, split: str | None,
                  source: str | None) -> None:
    """The asked-for split and source exist (else an error naming what does)."""
    if split:
        check_split(group, split)
    if source:
        layout.check_source(source)
        splits = [split] if split else splits_of(group)
        held = {sp: list_sources(group, sp) for sp in splits}
        if not any(source in names for names in held.values()):
            have = "; ".join(f"{sp}: {', '.join(n) or 'none'}" for sp, n in held.items())
            raise MissingSourceError(
                f"saliency source {source!r} is not in store {store}: searched split(s) "
                f"{', '.join(held) or 'none'} (sources there: {have or 'none'}); check "
                "--source and --split")


def read_attrs(obj) -> dict:
    """The Zarr attrs of an exported HDF5 group or dataset (JSON-decoded)."""
    return {k: json.loads(v) for k, v in obj.attrs.items()}


def run_export(store: str, out: Path, *, split: str | None = None,
               source: str | None = None) -> dict:
    """Copy ``store`` into the HDF5 file ``out`` (atomically).

    Args:
        store: path or fsspec URL of the data set store.
        out: the ``.h5`` file to write (replaced if present).
        split, source: export only this split / this saliency source (with the images).

    Returns:
        ``{"out": str, "arrays": [paths], "bytes": size of the file}``.
    """

    group = open_group(str(store), "r")
    _check_wanted(group, str(store), split, source)
    out = Path(out)
    arrays = []
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as h5:
            _copy_attrs(group, h5)
            for path, node in _walk(group):
                if not _wanted(path, split, source):
                    continue
                if isinstance(node, zarr.Array):
                    _copy_array(node, h5, path)
                    arrays.append(path)
                else:
                    _copy_attrs(node, h5.require_group(path))
    log.info("exported %d arrays of %s to %s", len(arrays), store, out)
    return {"out": str(out), "arrays": arrays, "bytes": out.stat().st_size}

"""Opening and reading the per-data-set Zarr store (docs/contracts.md, DESIGN.md section 3).

The store is written by :func:`pipeline.stages.prepare_data.run_prepare_data`; these functions read
it back. ``url`` may be a local path or any fsspec URL (``file://``, ``memory://``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import zarr
from zarr.core.sync import sync

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


class StoreError(ValueError):
    """The store (or a node or chunk inside it) cannot be read: not a store, damaged."""


def _root_metadata(url: str | Path) -> dict:
    """The parsed root ``zarr.json`` of the store at ``url``, after checking that ``url``
    is a Zarr v3 group: one clear error for each other thing found there.

    Raises:
        FileNotFoundError: nothing at ``url``.
        StoreError: a plain file, a folder without ``zarr.json``, a Zarr v2 store, a Zarr
            array, or a ``zarr.json`` that is not valid JSON.
    """
    make = "`salpipe prepare-data --dataset NAME --store PATH`"
    remake = f"`salpipe prepare-data --dataset NAME --store {url} --overwrite`"
    if _is_url(url):
        fs, path = fsspec.core.url_to_fs(str(url))
        path = path.rstrip("/")
        exists, isfile = fs.exists(path), fs.isfile(path)
        has = lambda name: fs.exists(f"{path}/{name}")  # noqa: E731
        read = lambda name: fs.cat_file(f"{path}/{name}")  # noqa: E731
    else:
        root = Path(url)
        exists, isfile = root.exists(), root.is_file()
        has = lambda name: (root / name).is_file()  # noqa: E731
        read = lambda name: (root / name).read_bytes()  # noqa: E731
    if not exists and not has("zarr.json"):  # object stores have no folders
        raise FileNotFoundError(f"no data set store at {url} (run {make})")
    if isfile:
        raise StoreError(
            f"{url} is a file, not a data set store: a store is the <dataset>.zarr folder "
            f"written by {make}; pass that folder as --store")
    if not has("zarr.json"):
        if has(".zgroup") or has(".zarray"):
            raise StoreError(
                f"{url} is a Zarr v2 store; salpipe reads the Zarr v3 stores written by "
                f"salpipe prepare-data: rebuild it with {remake}")
        raise StoreError(
            f"{url} is a folder but not a Zarr store (it has no zarr.json); pass the "
            f"<dataset>.zarr folder written by {make}")
    meta = f"{url}/zarr.json"
    try:
        doc = json.loads(read("zarr.json"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StoreError(
            f"store {url} is damaged: {meta} is not valid JSON ({e}); rebuild it with "
            f"{remake}") from e
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3:
        fmt = doc.get("zarr_format") if isinstance(doc, dict) else None
        raise StoreError(
            f"{meta} is not Zarr v3 group metadata (zarr_format {fmt!r}); salpipe reads "
            f"the Zarr v3 stores written by {make}")
    if doc.get("node_type") != "group":
        raise StoreError(
            f"{url} is a Zarr {doc.get('node_type')}, not a data set store (a Zarr group "
            f"with splits, written by {make})")
    return doc


def open_store(url: str | Path, mode: str = "r") -> zarr.Group:
    """Open the data set store at ``url`` (path or fsspec URL).

    Args:
        url: the ``<dataset>.zarr`` location.
        mode: zarr mode; ``r`` (read), ``r+`` (read/write existing) or ``a``.

    Returns:
        The root group.

    Raises:
        FileNotFoundError: nothing at ``url``.
        StoreError (a ValueError): ``url`` is a plain file, a folder that is no Zarr
            store, a Zarr v2 store or array, or its metadata is damaged.
        ValueError: the store has another ``schema_version`` (or none: unfinished, or
            not a salpipe store).
    """
    if mode not in ("r", "r+", "a"):
        raise ValueError(f"open_store mode must be r, r+ or a, not {mode!r}")
    _root_metadata(url)
    try:
        group = zarr.open_group(str(url), mode=mode)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  (zarr's errors for unreadable metadata)
        raise StoreError(f"cannot open store {url} as a Zarr group: "
                         f"{type(e).__name__}: {e}") from e
    version = group.attrs.get("schema_version")
    if version is None:
        raise ValueError(
            f"store {url} has no schema_version: it is not a salpipe data set store, or "
            "`salpipe prepare-data` did not finish writing it; rebuild it with "
            "`salpipe prepare-data --overwrite`"
        )
    if version != layout.SCHEMA_VERSION:
        raise ValueError(
            f"store {url} has schema_version {version!r}, this salpipe reads "
            f"{layout.SCHEMA_VERSION}; rebuild it with `salpipe prepare-data --overwrite`"
        )
    return group


def _where(obj) -> str:
    """Where a zarr node lives, for messages: ``/data/cifar10.zarr/train/images``,
    ``memory:///x.zarr/train``, ``s3://bucket/x.zarr``."""
    try:
        store, path = obj.store, obj.path
        if hasattr(store, "root"):  # LocalStore
            root = str(store.root)
        elif hasattr(store, "fs") and hasattr(store, "path"):  # FsspecStore
            proto = store.fs.protocol
            proto = proto[0] if isinstance(proto, (tuple, list)) else proto
            root = f"{proto}://{store.path}"
        else:
            root = str(store)
        return f"{root.rstrip('/')}/{path}" if path else root
    except Exception:  # noqa: BLE001  (only for a message)
        return str(obj)


def _damaged(group: zarr.Group, path: str, err: Exception) -> StoreError:
    meta = "/".join(p.strip("/") for p in (_where(group), path, "zarr.json") if p)
    meta = ("/" if _where(group).startswith("/") else "") + meta
    return StoreError(
        f"cannot read {meta} (or a zarr.json on the way to it): {type(err).__name__}: "
        f"{err}. The store is damaged there: recompute a saliency source with `salpipe "
        "precompute-saliency ... --overwrite`, rebuild images or labels with `salpipe "
        "prepare-data --overwrite`")


def get_node(group: zarr.Group, path: str):
    """``group[path]``, with a damaged node (metadata that is not valid JSON or not zarr
    metadata) reported as a :class:`StoreError` naming its ``zarr.json``; a missing node
    stays a ``KeyError``."""
    try:
        return group[path]
    except (KeyError, OSError):
        raise
    except Exception as e:  # noqa: BLE001  (json / zarr metadata errors)
        raise _damaged(group, path, e) from e


def has_node(group: zarr.Group, path: str) -> bool:
    """``path in group``, with damaged metadata on the way a :class:`StoreError`."""
    try:
        return path in group
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  (json / zarr metadata errors)
        raise _damaged(group, path, e) from e


def group_names(group: zarr.Group, path: str) -> list[str]:
    """Sorted names of the child groups of ``group[path]``; a damaged child is a
    :class:`StoreError` naming its ``zarr.json``."""
    node = get_node(group, path) if path else group
    return sorted(_listed(group, path, node, lambda n: n.group_keys()))


def array_members(group: zarr.Group) -> dict[str, zarr.Array]:
    """``dict(group.arrays())``; a damaged child is a :class:`StoreError` naming its
    ``zarr.json``."""
    return dict(_listed(group, "", group, lambda n: n.arrays()))


def _listed(group: zarr.Group, path: str, node: zarr.Group, read):
    """``list(read(node))``, with zarr's metadata errors turned into a
    :class:`StoreError` naming the damaged child of ``node`` (``path`` in ``group``)."""
    try:
        return list(read(node))
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  (json / zarr metadata errors)
        bad = _damaged_children(node)
        where = "/".join(p for p in (path, bad[0] if bad else "") if p)
        raise _damaged(group, where, e) from e


def _damaged_children(node: zarr.Group) -> list[str]:
    """Names of the children of ``node`` whose metadata does not load (best effort)."""
    async def listing() -> list[str]:
        return [k async for k in node.store.list_dir(node.path)]

    try:
        names = [n for n in sync(listing()) if n != "zarr.json"]
    except Exception:  # noqa: BLE001  (only for a message)
        return []
    bad = []
    for name in sorted(names):
        try:
            node[name]
        except KeyError:
            continue
        except Exception:  # noqa: BLE001
            bad.append(name)
    return bad


def read_array(arr: zarr.Array, sel=slice(None)) -> np.ndarray:
    """``arr[sel]`` as numpy, with a chunk that does not decode (bit rot, a truncated or
    foreign file: blosc/zstd/numcodecs errors) reported as a :class:`StoreError` naming
    the array and the chunks; OSErrors (missing files, permissions) pass unchanged."""
    try:
        return np.asarray(arr[sel])
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  (codec errors have no common type)
        what = _chunks_of(arr, _bad_part(arr, sel))
        raise StoreError(
            f"cannot decode {_where(arr)}{what}: {type(e).__name__}: {e}. The store is "
            "damaged there: `salpipe cache verify` lists the damaged chunks of saliency "
            "sources (recompute them with `salpipe precompute-saliency --overwrite`); "
            "damaged images or labels need `salpipe prepare-data --overwrite`") from e


def _bad_part(arr, sel):
    """The first chunk of ``sel`` (along axis 0) that fails to decode, else ``sel``."""
    if not isinstance(sel, slice) or not arr.shape:
        return sel
    a, b, step = sel.indices(arr.shape[0])
    c = max(int(arr.chunks[0]), 1)
    if step != 1 or b - a <= c:
        return sel
    for start in range(a - a % c, b, c):
        part = slice(max(start, a), min(start + c, b))
        try:
            arr[part]
        except Exception:  # noqa: BLE001
            return part
    return sel


def _chunks_of(arr, sel) -> str:
    if not isinstance(sel, slice) or not arr.shape:
        return ""
    a, b, _ = sel.indices(arr.shape[0])
    c = max(int(arr.chunks[0]), 1)
    first, last = a // c, max(a, b - 1) // c
    chunks = f"chunk {first}" if first == last else f"chunks {first}..{last}"
    return f" (rows {a}:{b}, {chunks} along axis 0)"


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
    if not has_node(group, split):
        have = group.attrs.get("splits") or group_names(group, "")
        raise KeyError(
            f"store {_where(group)} has no split {split!r}; splits: {', '.join(have)}"
        )
    sl = slice(start, stop)
    for name in (layout.images_path(split), layout.labels_path(split)):
        if not has_node(group, name):
            raise KeyError(f"store {_where(group)} has no {name} (the split is incomplete; "
                           "rebuild it with `salpipe prepare-data --overwrite`)")
    images = read_array(get_node(group, layout.images_path(split)), sl)
    labels = read_array(get_node(group, layout.labels_path(split)), sl).astype(np.int64)
    out = SplitArrays(images=images, labels=labels)
    ann = get_node(group, split)
    if has_node(ann, "annotations"):
        names = set(array_members(get_node(ann, "annotations")))
        if "mask" in names:
            packed = read_array(get_node(group, layout.annotation_path(split, "mask")), sl)
            out.masks = unpack_bits(packed, tuple(images.shape[2:]))
            out.has_mask = read_array(
                get_node(group, layout.annotation_path(split, "has_mask")), sl)
        if "bbox" in names:
            out.bbox = read_array(get_node(group, layout.annotation_path(split, "bbox")), sl)
    return out

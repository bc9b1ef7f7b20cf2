"""``salpipe cache info``: what a store holds, per split and saliency source.

For each source: size on disk, completeness, provenance and, where the split has object
masks, the energy pointing game (mean share of channel-summed |saliency| inside the
object mask, :func:`pipeline.saliency.metrics.energy_in_mask`; images without a mask are
left out). A map spread evenly scores the mean object area (given as ``mask_area``).
"""

from __future__ import annotations

import fsspec
import numpy as np
import torch

from pipeline.cache.bits import unpack_bits
from pipeline.cache.saliency_store import (
    PROVENANCE_KEYS,
    _local_path,
    chunk_count,
    list_sources,
    open_group,
    splits_of,
)
from pipeline.cache.store import (
    StoreError,
    array_members,
    get_node,
    has_node,
    read_array,
)
from pipeline.saliency.metrics import energy_in_mask


def disk_bytes(store: str, path: str) -> int:
    """Bytes on disk (or in the object store) under ``path`` of ``store``."""

    fs, root = fsspec.core.url_to_fs(_local_path(str(store)))
    full = f"{root.rstrip('/')}/{path}"
    return int(fs.du(full)) if fs.exists(full) else 0


def energy_pointing_game(group, split: str, source: str) -> dict | None:
    """Mean energy share inside the object masks, chunk by chunk; None without masks."""

    ann = f"{split}/annotations"
    if not has_node(group, f"{ann}/mask"):
        return None
    smap = get_node(group, f"{split}/saliency/{source}/map")
    mask_arr = get_node(group, f"{ann}/mask")
    h, w = smap.shape[-2:]
    b = smap.chunks[0]
    has_arr = get_node(group, f"{ann}/has_mask") if has_node(group, f"{ann}/has_mask") else None
    shares, areas = [], []
    for start in range(0, smap.shape[0], b):
        sl = slice(start, start + b)
        masks = torch.from_numpy(unpack_bits(read_array(mask_arr, sl), (h, w)))
        has = None if has_arr is None else torch.from_numpy(read_array(has_arr, sl).astype(bool))
        share = energy_in_mask(torch.from_numpy(read_array(smap, sl).astype(np.float32)),
                               masks, has)
        valid = ~torch.isnan(share)
        shares.append(share[valid])
        areas.append(masks[valid].float().mean((1, 2)))
    share, area = torch.cat(shares), torch.cat(areas)
    if share.numel() == 0:
        return None
    return {"score": float(share.mean()), "mask_area": float(area.mean()),
            "images": int(share.numel())}


def cache_info(store: str, *, pointing_game: bool = True) -> dict:
    """A JSON-able summary of ``store``: data set attrs and every saliency source."""
    store = str(store)
    group = open_group(store, "r")
    root = dict(group.attrs)
    out = {"store": store, "dataset": root.get("dataset"), "fingerprint": root.get("fingerprint"),
           "schema_version": root.get("schema_version"), "bytes": disk_bytes(store, ""),
           "splits": {}}
    for split in splits_of(group):
        if not has_node(group, split) or not has_node(group, f"{split}/images"):
            continue
        images = get_node(group, f"{split}/images")
        entry = {"n": images.shape[0], "image_shape": list(images.shape[1:]),
                 "chunk": images.chunks[0],
                 "has_masks": has_node(group, f"{split}/annotations/mask"),
                 "has_boxes": has_node(group, f"{split}/annotations/bbox"), "sources": {}}
        for source in list_sources(group, split):
            try:
                info = _source_info(store, group, split, source)
            except StoreError as e:  # damaged array metadata: say so, show the rest
                entry["sources"][source] = {"error": str(e)}
                continue
            if pointing_game and info["complete"] and "map" in info["arrays"]:
                try:
                    info["pointing_game"] = energy_pointing_game(group, split, source)
                except StoreError as e:  # a damaged chunk: say so, show the rest
                    info["pointing_game"] = None
                    info["pointing_game_error"] = str(e)
            entry["sources"][source] = info
        out["splits"][split] = entry
    return out


def _source_info(store: str, group, split: str, source: str) -> dict:
    grp = get_node(group, f"{split}/saliency/{source}")
    attrs = dict(grp.attrs)
    arrays = array_members(grp)
    smap = arrays.get("map")
    return {"bytes": disk_bytes(store, f"{split}/saliency/{source}"),
            "complete": bool(attrs.get("complete")),
            "chunks_done": len(attrs.get("chunks_done", [])),
            "chunks": chunk_count(smap.shape[0], smap.chunks[0]) if smap is not None else 0,
            "arrays": sorted(arrays), "created": attrs.get("created"),
            "salpipe_version": attrs.get("salpipe_version"),
            **{k: attrs.get(k) for k in PROVENANCE_KEYS}}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_info(info: dict) -> str:
    """The summary of :func:`cache_info` as indented text for the terminal."""
    head = (f"store {info['store']}: data set {info['dataset']!r}, fingerprint "
            f"{str(info['fingerprint'])[:12]}..., schema {info['schema_version']}, "
            f"{_size(info['bytes'])} on disk")
    lines = [head]
    for split, entry in info["splits"].items():
        extra = ", masks" * entry["has_masks"] + ", boxes" * entry["has_boxes"]
        lines.append(f"  {split}: {entry['n']} images {entry['image_shape']}, chunk "
                     f"{entry['chunk']}{extra}; {len(entry['sources'])} saliency source(s)")
        for name, s in entry["sources"].items():
            if "error" in s:
                lines.append(f"    {name}: DAMAGED: {s['error']}")
                continue
            state = ("complete" if s["complete"]
                     else f"INCOMPLETE {s['chunks_done']}/{s['chunks']} chunks")
            lines.append(f"    {name}: {state}, {_size(s['bytes'])}, "
                         f"arrays {', '.join(s['arrays'])}")
            sha = s.get("teacher_sha256")
            lines.append(f"      method {s['method']} params {s['params']} target {s['target']} "
                         f"teacher {s['teacher']}" + (f" (sha256 {sha[:12]}...)" if sha else ""))
            lines.append(f"      created {s['created']}, "
                         f"salpipe {s['salpipe_version']}")
            pg = s.get("pointing_game")
            if s.get("pointing_game_error"):
                lines.append(f"      energy pointing game not computed: "
                             f"{s['pointing_game_error']}")
            if pg:
                lines.append(f"      energy pointing game {pg['score']:.3f} over {pg['images']} "
                             f"masked images (uniform map: {pg['mask_area']:.3f})")
    return "\n".join(lines)

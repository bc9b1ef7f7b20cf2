"""``salpipe show-saliency``: a PNG gallery of cached saliency, one image per row.

Columns: the image, the map (channel sum, red positive / blue negative, symmetric
per-image scale), the sign plane
(share of channels where ``map > 0``: white = positive in all channels) and the
salience mask, plus the box when the source has one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pipeline.cache.bits import unpack_bits
from pipeline.cache.saliency_store import (
    MissingSourceError,
    open_group,
    source_group,
    split_array,
)
from pipeline.cache.store import get_node, has_node, read_array
from pipeline.core.io import atomic_path

log = logging.getLogger(__name__)


def _box(ax, box) -> None:
    x0, y0, x1, y1 = (int(v) for v in box)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1,
                           fill=False, edgecolor="red", linewidth=1))


def run_show_saliency(store: str, source: str, out: Path, *, split: str = "train",
                      n: int = 16, start: int = 0) -> dict:
    """Draw images ``start .. start+n-1`` of ``split`` with their cached saliency.

    Args:
        store: path or fsspec URL of the data set store.
        source: saliency source name (``resnet10_adv.gbp``, ``annotation.mask``).
        out: PNG to write (atomically).
        split: which split.
        n: how many images (rows).
        start: index of the first image.

    Returns:
        ``{"out": str, "images": [indices]}``.
    """
    group = open_group(str(store), "r")
    grp = source_group(group, split, source)
    lost = [k for k in ("map", "sign", "mask") if not has_node(grp, k)]
    if lost:
        raise MissingSourceError(
            f"saliency source {split}/{source} of store {store} has no {', '.join(lost)} "
            "array(s); recompute it with salpipe precompute-saliency --overwrite")
    total = grp["map"].shape[0]
    if not 0 <= start < total or n < 1:
        raise ValueError(f"--start {start} / --n {n} outside the {total} images of {split}")
    if not grp.attrs.get("complete", False):
        log.warning("%s/%s is incomplete: images of unfinished chunks show empty maps",
                    split, source)
    sl = slice(start, min(start + n, total))
    images = read_array(split_array(group, split, "images"), sl)
    smap = read_array(get_node(grp, "map"), sl).astype(np.float32)
    c, h, w = smap.shape[1:]
    sign = unpack_bits(read_array(get_node(grp, "sign"), sl), (c, h, w))
    mask = unpack_bits(read_array(get_node(grp, "mask"), sl), (h, w))
    boxes = read_array(get_node(grp, "bbox"), sl) if has_node(grp, "bbox") else None
    rows = smap.shape[0]
    fig, axes = plt.subplots(rows, 4, figsize=(6, 1.5 * rows), squeeze=False)
    for r in range(rows):
        img = images[r].transpose(1, 2, 0)
        summed = smap[r].sum(0)
        scale = float(np.abs(summed).max()) or 1.0
        panels = [(img if c == 3 else img[..., 0], "image", "gray", None),
                  (summed, "map", "RdBu_r", (-scale, scale)),
                  (sign[r].mean(0), "sign > 0", "gray", (0, 1)),
                  (mask[r], "mask", "gray", (0, 1))]
        for col, (data, title, cmap, lim) in enumerate(panels):
            ax = axes[r, col]
            ax.imshow(data, cmap=cmap, vmin=lim and lim[0], vmax=lim and lim[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if boxes is not None and col in (0, 1):
                _box(ax, boxes[r])
            if r == 0:
                ax.set_title(title, fontsize=8)
        axes[r, 0].set_ylabel(str(start + r), fontsize=7)
    fig.suptitle(f"{split}/{source}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    log.info("wrote %s (%d images of %s/%s)", out, rows, split, source)
    return {"out": str(out), "images": list(range(sl.start, sl.stop))}

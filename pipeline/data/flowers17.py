"""Oxford Flowers-17 as laid out in ``shared/data/flowers17``, with foreground masks.

``root`` holds ``labels.csv`` (``filename,class_index,class_name,has_trimap,split``),
``jpg/<filename>`` and ``trimaps/<stem>.png`` (palette label maps: 0 null, 1 flower,
2 leaves, 3 background, 4 sky). Foreground mask = label 1. Images without a label map are
kept with ``has_mask=False``. Splits: train, val, test (the ``split`` column).

Nilsback & Zisserman, *A Visual Vocabulary for Flower Classification*, CVPR 2006.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import DATASETS
from pipeline.data.base import DataError
from pipeline.data.files import FileDataset, Record, check_classes_nonempty

SPLITS = ("train", "val", "test")
COLUMNS = ("filename", "class_index", "class_name", "has_trimap", "split")


def flower_mask(arr: np.ndarray) -> np.ndarray:
    """Label map -> foreground (flower) mask: value 1."""
    return arr == 1


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    if not rows or any(c not in rows[0] for c in COLUMNS):
        raise DataError(f"{path} must have columns {', '.join(COLUMNS)}")
    return rows


@DATASETS.register("flowers17")
@dataclass(frozen=True)
class Flowers17Config(FileDataset):
    """Flowers-17 (17 classes; 128x128 JPEGs here; masks for most images).

    Args:
        root: the folder holding ``labels.csv``, ``jpg/`` and ``trimaps/``.
        resolution: output side in pixels.
        fit: ``resize`` or ``crop`` (see :mod:`pipeline.data.base`).
        limit: at most this many images per split (seeded random subset), None = all.
        seed: seed of that subset.
    """

    root: str

    mask_rule = staticmethod(flower_mask)

    def classes(self) -> list[str]:
        rows = _read_csv(Path(self.root) / "labels.csv")
        names = {int(r["class_index"]): r["class_name"] for r in rows}
        return [names.get(i, str(i)) for i in range(max(names) + 1)]

    def _scan(self) -> dict[str, list[Record]]:
        root = Path(self.root)
        csv_path = root / "labels.csv"
        out: dict[str, list[Record]] = {s: [] for s in SPLITS}
        for i, r in enumerate(_read_csv(csv_path)):
            where = f"{csv_path} line {i + 2}"
            if r["split"] not in out:
                raise DataError(f"split {r['split']!r} is not one of {SPLITS}: {where}")
            try:
                label, has = int(r["class_index"]), int(r["has_trimap"])
            except ValueError:
                raise DataError(f"class_index/has_trimap must be integers: {where}") from None
            stem = Path(r["filename"]).stem
            mask = root / "trimaps" / f"{stem}.png" if has else None
            out[r["split"]].append(Record(root / "jpg" / r["filename"], label, mask_path=mask))
        for recs in out.values():
            check_classes_nonempty(recs, self.classes(), csv_path)
        return out

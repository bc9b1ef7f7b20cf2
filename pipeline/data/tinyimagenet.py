"""Tiny ImageNet in its original folder layout, with one box per image.

``root`` is ``tiny-imagenet-200/`` or a folder holding it::

    wnids.txt  words.txt (optional: class names)
    train/<wnid>/<wnid>_boxes.txt       <file> <x0> <y0> <x1> <y1>
    train/<wnid>/images/<file>
    val/val_annotations.txt             <file> <wnid> <x0> <y0> <x1> <y1>
    val/images/<file>

Classes are the wnids of ``wnids.txt`` in file order (names: the first words.txt synonym);
the images of a split are the lines of its box files (val lines of other wnids are
skipped, so a class subset works). Boxes are inclusive pixel corners. Splits: train, val.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pipeline.data import DATASETS
from pipeline.data.base import DataError
from pipeline.data.files import FileDataset, Record, check_classes_nonempty, read_lines


def _box(parts: list[str], where: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in parts)
    except ValueError:
        raise DataError(f"bad box {parts}: {where}") from None
    return x0, y0, x1 + 1.0, y1 + 1.0  # inclusive corners -> exclusive ends


@DATASETS.register("tinyimagenet")
@dataclass(frozen=True)
class TinyImageNetConfig(FileDataset):
    """Tiny ImageNet (64x64 JPEGs, boxes).

    Args:
        root: ``tiny-imagenet-200`` or its parent.
        resolution: output side in pixels (64 = native).
        fit: ``resize`` or ``crop`` (see :mod:`pipeline.data.base`).
        limit: at most this many images per split (seeded random subset), None = all.
        seed: seed of that subset.
    """

    root: str

    def _dir(self) -> Path:
        root = Path(self.root)
        sub = root / "tiny-imagenet-200"
        return sub if sub.is_dir() else root

    @functools.cached_property
    def _wnids(self) -> list[str]:
        return [p[0] for p in read_lines(self._dir() / "wnids.txt")]

    def classes(self) -> list[str]:
        words_file = self._dir() / "words.txt"
        words = {}
        if words_file.exists():
            for line in words_file.read_text().splitlines():
                wnid, _, text = line.partition("\t")
                words[wnid.strip()] = text.split(",")[0].strip()
        return [words.get(w) or w for w in self._wnids]

    def _scan(self) -> dict[str, list[Record]]:
        d, wnids = self._dir(), self._wnids
        train = []
        for label, wnid in enumerate(wnids):
            box_file = d / "train" / wnid / f"{wnid}_boxes.txt"
            for i, parts in enumerate(read_lines(box_file)):
                where = f"{box_file} line {i + 1}"
                if len(parts) != 5:
                    raise DataError(f"expected '<file> x0 y0 x1 y1': {where}")
                path = d / "train" / wnid / "images" / parts[0]
                train.append(Record(path, label, _box(parts[1:], where), where))
        check_classes_nonempty(train, self.classes(), d / "wnids.txt")
        index = {w: i for i, w in enumerate(wnids)}
        ann = d / "val" / "val_annotations.txt"
        val = []
        for i, parts in enumerate(read_lines(ann)):
            where = f"{ann} line {i + 1}"
            if len(parts) != 6:
                raise DataError(f"expected '<file> <wnid> x0 y0 x1 y1': {where}")
            if parts[1] in index:
                path = d / "val" / "images" / parts[0]
                val.append(Record(path, index[parts[1]], _box(parts[2:], where), where))
        check_classes_nonempty(val, self.classes(), ann)
        return {"train": train, "val": val}

"""CUB-200-2011 in its original layout: boxes, and masks when ``segmentations/`` exists.

``root`` is ``CUB_200_2011/`` or a folder holding it::

    images.txt               <image_id> <relative path under images/>
    image_class_labels.txt   <image_id> <class_id>
    train_test_split.txt     <image_id> <1 = train, 0 = test>
    bounding_boxes.txt       <image_id> <x> <y> <width> <height>   (pixels, top-left)
    classes.txt              <class_id> <name>
    segmentations/<relative path>.png   (optional; mask = grey/alpha > 127)

Class ids of ``classes.txt`` map to labels in sorted order (a subset such as classes
1-20 works). With ``segmentations/`` present, images without a PNG get ``has_mask=False``.
Splits: train, test.

Wah et al., *The Caltech-UCSD Birds-200-2011 Dataset*, CNS-TR-2011-001, 2011.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pipeline.data import DATASETS
from pipeline.data.base import DataError
from pipeline.data.files import FileDataset, Record, check_classes_nonempty, read_lines


def _table(path: Path, width: int) -> dict[str, list[str]]:
    """``{first column: other columns}``; a line with another width is an error."""
    out = {}
    for i, parts in enumerate(read_lines(path)):
        if len(parts) < width:
            raise DataError(f"expected {width} columns: {path} line {i + 1}")
        out[parts[0]] = parts[1:] + [str(i + 1)]  # keep the line number for messages
    return out


@DATASETS.register("cub200")
@dataclass(frozen=True)
class Cub200Config(FileDataset):
    """CUB-200-2011 (200 bird species or a subset; boxes; optional masks).

    Args:
        root: ``CUB_200_2011`` or its parent.
        resolution: output side in pixels.
        fit: ``resize`` or ``crop`` (see :mod:`pipeline.data.base`).
        limit: at most this many images per split (seeded random subset), None = all.
        seed: seed of that subset.
    """

    root: str

    def _dir(self) -> Path:
        root = Path(self.root)
        return root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root

    @functools.cached_property
    def _class_table(self) -> list[tuple[str, str]]:
        table = _table(self._dir() / "classes.txt", 2)
        return sorted(((k, v[0]) for k, v in table.items()), key=lambda kv: int(kv[0]))

    def classes(self) -> list[str]:
        return [name for _, name in self._class_table]

    def _scan(self) -> dict[str, list[Record]]:
        d = self._dir()
        images = _table(d / "images.txt", 2)
        labels = _table(d / "image_class_labels.txt", 2)
        split = _table(d / "train_test_split.txt", 2)
        boxes = _table(d / "bounding_boxes.txt", 5)
        index = {cid: i for i, (cid, _) in enumerate(self._class_table)}
        seg = d / "segmentations"
        out: dict[str, list[Record]] = {"train": [], "test": []}
        for img_id, (rel, _) in images.items():
            for name, table in (("image_class_labels.txt", labels),
                                ("train_test_split.txt", split),
                                ("bounding_boxes.txt", boxes)):
                if img_id not in table:
                    raise DataError(f"image id {img_id} ({rel}) is missing from {d / name}")
            cid = labels[img_id][0]
            if cid not in index:
                raise DataError(f"class id {cid} of image {img_id} is not in {d / 'classes.txt'}")
            x, y, w, h = (float(v) for v in boxes[img_id][:4])
            where = f"{d / 'bounding_boxes.txt'} line {boxes[img_id][4]} (image {rel})"
            mask = seg / Path(rel).with_suffix(".png")
            rec = Record(d / "images" / rel, index[cid], (x, y, x + w, y + h), where,
                         mask if seg.is_dir() and mask.exists() else None)
            out["train" if split[img_id][0] == "1" else "test"].append(rec)
        for recs in out.values():
            check_classes_nonempty(recs, self.classes(), d / "classes.txt")
        return out

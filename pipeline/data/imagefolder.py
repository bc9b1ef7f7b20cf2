"""Class-per-folder images with optional masks beside them.

Rules::

    root/<split>/<class>/<name>.<jpg|jpeg|png|bmp|webp>   (extension case-insensitive)
    root/<split>/<class>/<name>.mask.png                  (optional mask of <name>)

- splits: the sub-folders of ``root`` (sorted), e.g. ``train``, ``val``, ``test``;
- classes: the class folders of ``train`` (or of the first split without one), sorted by
  name; every split may only use those classes, and no class folder may be empty;
- images: files sorted by name; ``*.mask.png`` files are masks, never images;
- masks: grey level (or alpha channel, when present) > 127 is foreground; an image
  without a mask file gets ``has_mask=False``. Masks exist for the data set when any
  image has one. No boxes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from pipeline.data import DATASETS
from pipeline.data.base import DataError
from pipeline.data.files import FileDataset, Record

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MASK_SUFFIX = ".mask.png"


@DATASETS.register("imagefolder")
@dataclass(frozen=True)
class ImageFolderConfig(FileDataset):
    """Any class-per-folder data set (see the module docstring for the rules).

    Args:
        root: the folder holding one sub-folder per split.
        resolution: output side in pixels.
        fit: ``resize`` or ``crop`` (see :mod:`pipeline.data.base`).
        limit: at most this many images per split (seeded random subset), None = all.
        seed: seed of that subset.
    """

    root: str

    @functools.cached_property
    def _split_dirs(self) -> list[Path]:
        root = Path(self.root)
        if not root.is_dir():
            raise DataError(f"image folder root not found: {root}")
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not dirs:
            raise DataError(f"{root} has no split folders (expected e.g. train/ and test/)")
        return dirs

    def classes(self) -> list[str]:
        by_name = {p.name: p for p in self._split_dirs}
        first = by_name.get("train", self._split_dirs[0])
        return sorted(p.name for p in first.iterdir() if p.is_dir())

    def _scan(self) -> dict[str, list[Record]]:
        classes = self.classes()
        out = {}
        for split_dir in self._split_dirs:
            recs = []
            for cdir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                if cdir.name not in classes:
                    raise DataError(f"class folder {cdir} is not a class of the train split "
                                    f"({', '.join(classes)})")
                files = sorted(
                    p for p in cdir.iterdir()
                    if p.suffix.lower() in EXTENSIONS and not p.name.endswith(MASK_SUFFIX)
                )
                if not files:
                    raise DataError(f"empty class folder (no images): {cdir}")
                for p in files:
                    mask = p.with_name(p.stem + MASK_SUFFIX)
                    recs.append(Record(p, classes.index(cdir.name),
                                       mask_path=mask if mask.exists() else None))
            if not recs:
                raise DataError(f"split folder {split_dir} has no class folders")
            out[split_dir.name] = recs
        return out

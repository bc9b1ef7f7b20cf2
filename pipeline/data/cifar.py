"""CIFAR-10 / CIFAR-100 in the python pickle batch layout.

``root`` is the batches folder (``cifar-10-batches-py`` / ``cifar-100-python``) or a folder
holding it. CIFAR-10: train = ``data_batch_*``, test = ``test_batch`` or ``test_batch_*``
(official names and split files such as ``test_batch_1``, ``test_batch_2`` both work),
class names from ``batches.meta``. CIFAR-100: ``train``, ``test`` and ``meta``
(``fine_label_names`` / ``coarse_label_names``). Files are read with a restricted
unpickler that only builds plain containers and numpy arrays.

Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from pipeline.data import DATASETS
from pipeline.data.base import (
    Block,
    DataError,
    DatasetAdapter,
    check_resolution,
    subsample,
)

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with ``str`` keys; errors name the file."""
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR batch file not found: {path}") from None
    except Exception as e:  # a corrupt pickle can raise almost anything
        raise DataError(f"cannot read CIFAR batch {path}: {e}") from None
    if not isinstance(d, dict):
        raise DataError(f"CIFAR batch {path} holds a {type(d).__name__}, not a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _natural(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))


class _CifarBase(DatasetAdapter):
    folder: str = ""
    files: dict[str, str] = {}
    meta_file: str = ""

    def _dir(self) -> Path:
        root = Path(self.root)
        return root / self.folder if (root / self.folder).is_dir() else root

    def _files(self, split: str) -> list[Path]:
        d = self._dir()
        pat = self.files[self.check_split(split)]
        found = sorted((p for p in d.glob(pat + "*") if re.fullmatch(pat + r"(_\d+)?", p.name)),
                       key=_natural)
        if not found:
            raise DataError(f"no {split} batch files ({pat} or {pat}_<n>) in {d}")
        return found

    def _label_key(self) -> str:
        return "labels"

    def classes(self) -> list[str]:
        meta = load_pickle(self._dir() / self.meta_file)
        key = self._label_key().replace("labels", "label_names")
        if key not in meta:
            raise DataError(f"{self._dir() / self.meta_file} has no {key!r}")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]

    def splits(self) -> list[str]:
        return list(self.files)

    @functools.cached_property
    def _loaded(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {}  # split -> (images [N,3,32,32], labels [N]), filled on first use

    def _data(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split in self._loaded:
            return self._loaded[split]
        xs, ys = [], []
        for path in self._files(split):
            d = load_pickle(path)
            if "data" not in d or self._label_key() not in d:
                raise DataError(f"{path} lacks 'data' or {self._label_key()!r}")
            x = np.asarray(d["data"], np.uint8)
            y = np.asarray(d[self._label_key()], np.int64)
            if x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
                raise DataError(f"{path}: data {x.shape} / labels {y.shape}, "
                                "expected [N, 3072] and [N]")
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        keep = subsample(len(x), self.limit, self.seed + self.splits().index(split))
        self._loaded[split] = (x[keep].reshape(-1, 3, 32, 32), y[keep])
        return self._loaded[split]

    def split_size(self, split: str) -> int:
        return len(self._data(self.check_split(split))[1])

    def has_masks(self) -> bool:
        return False

    def has_boxes(self) -> bool:
        return False

    def iter_blocks(self, split: str, block: int) -> Iterator[Block]:
        x, y = self._data(self.check_split(split))
        bad = (y < 0) | (y >= len(self.classes()))
        if bad.any():
            raise DataError(f"{split} label {y[bad][0]} out of range in {self._files(split)}")
        for s in range(0, len(y), block):
            yield Block(images=self._resize(x[s : s + block]), labels=y[s : s + block])

    def _resize(self, x: np.ndarray) -> np.ndarray:
        r = self.resolution
        if r == 32:
            return np.ascontiguousarray(x)
        return np.stack([
            np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((r, r), Image.BILINEAR))
            .transpose(2, 0, 1) for im in x
        ])

    def source_signature(self) -> str:
        params = {k: v for k, v in self.params().items() if k != "root"}
        h = hashlib.sha256(repr(sorted(params.items())).encode())
        for split in self.files:
            for p in self._files(split) + [self._dir() / self.meta_file]:
                st = p.stat()
                h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()


@DATASETS.register("cifar10")
@dataclass(frozen=True)
class Cifar10Config(_CifarBase):
    """CIFAR-10 (10 classes, 32x32).

    Args:
        root: batches folder or its parent.
        resolution: output side in pixels (32 = native; else bilinear resize).
        limit: at most this many images per split (a seeded random subset), None = all.
        seed: seed of that subset.
    """

    root: str
    resolution: int = 32
    limit: int | None = None
    seed: int = 0

    folder = "cifar-10-batches-py"
    files = {"train": "data_batch", "test": "test_batch"}
    meta_file = "batches.meta"

    def __post_init__(self):
        check_resolution(self.resolution)


@DATASETS.register("cifar100")
@dataclass(frozen=True)
class Cifar100Config(_CifarBase):
    """CIFAR-100 (100 fine or 20 coarse classes, 32x32).

    Args:
        root: ``cifar-100-python`` folder or its parent.
        resolution: output side in pixels.
        labels: ``fine`` (100 classes) or ``coarse`` (20 superclasses).
        limit: at most this many images per split, None = all.
        seed: seed of that subset.
    """

    root: str
    resolution: int = 32
    labels: Literal["fine", "coarse"] = "fine"
    limit: int | None = None
    seed: int = 0

    folder = "cifar-100-python"
    files = {"train": "train", "test": "test"}
    meta_file = "meta"

    def __post_init__(self):
        check_resolution(self.resolution)

    def _label_key(self) -> str:
        return f"{self.labels}_labels"

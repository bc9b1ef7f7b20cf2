"""Content fingerprints of a data set store, computed while it streams block by block.

A split's fingerprint hashes each array (images, labels, packed masks, has_mask, boxes) as
one byte stream with its dtype and shape, so it does not depend on the block size. The
data set fingerprint hashes the sorted ``split=fingerprint`` pairs and the class names.
"""

from __future__ import annotations

import hashlib

import numpy as np


class SplitHasher:
    """Accumulates one sha256 per named array; :meth:`hexdigest` combines them."""

    def __init__(self) -> None:
        self._h: dict[str, hashlib._Hash] = {}
        self._meta: dict[str, tuple] = {}

    def update(self, name: str, arr: np.ndarray) -> None:
        """Append ``arr`` (a block along axis 0) to the stream ``name``."""
        arr = np.ascontiguousarray(arr)
        if name not in self._h:
            self._h[name] = hashlib.sha256()
            self._meta[name] = (arr.dtype.str, arr.shape[1:], 0)
        dtype, tail, n = self._meta[name]
        if (arr.dtype.str, arr.shape[1:]) != (dtype, tail):
            raise ValueError(f"{name}: block {arr.dtype}{arr.shape} does not match {dtype}{tail}")
        self._meta[name] = (dtype, tail, n + arr.shape[0])
        self._h[name].update(arr.tobytes())

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self._h):
            dtype, tail, n = self._meta[name]
            h.update(f"{name}|{dtype}|{(n, *tail)}|{self._h[name].hexdigest()};".encode())
        return h.hexdigest()


def dataset_fingerprint(split_fps: dict[str, str], classes: list[str]) -> str:
    """sha256 hex over the class names and every split's fingerprint."""
    h = hashlib.sha256(("classes=" + "\x1f".join(classes)).encode())
    for split in sorted(split_fps):
        h.update(f";{split}={split_fps[split]}".encode())
    return h.hexdigest()

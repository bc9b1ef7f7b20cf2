"""Bit-packing of boolean planes (masks, sign planes) along all but the first axis."""

from __future__ import annotations

import numpy as np


def pack_bits(planes: np.ndarray) -> np.ndarray:
    """``bool [N, ...]`` -> ``uint8 [N, ceil(prod(...)/8)]`` (big-endian bit order, numpy's)."""
    planes = np.asarray(planes, dtype=bool)
    return np.packbits(planes.reshape(planes.shape[0], -1), axis=1)


def unpack_bits(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``uint8 [N, B]`` -> ``bool [N, *shape]``."""
    n = int(np.prod(shape))
    if packed.shape[1] != (n + 7) // 8:
        raise ValueError(
            f"packed planes have {packed.shape[1]} bytes per item, expected {(n + 7) // 8} for {shape}"
        )
    flat = np.unpackbits(packed, axis=1, count=n)
    return flat.reshape((packed.shape[0], *shape)).astype(bool)


def packed_width(shape: tuple[int, ...]) -> int:
    """Bytes per item of a packed plane of ``shape``."""
    return (int(np.prod(shape)) + 7) // 8

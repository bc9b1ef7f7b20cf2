"""Seeding, the one seed derivation, and device selection.

Every random stream of salpipe that must not depend on order, batch size or worker (a
training batch's crop offsets, an example's attack noise, a saliency chunk's SmoothGrad
noise) is seeded by :func:`derive_seed` from its base seed and its integer keys.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


_MASK64 = 2**64 - 1


def derive_seed(seed: int, a: int = 0, b: int = 0) -> int:
    """A 63-bit seed for the stream ``(seed, a, b)`` (SplitMix64 finaliser).

    Keys as used: training batches ``(seed, epoch, batch)`` (batch -1: the epoch's
    permutation, -2: its chunk order); attack noise ``(seed, dataset index)``; saliency
    chunks ``(method seed, chunk index, batch)``. Distinct keys give unrelated streams.
    """
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(a) * 0xBF58476D1CE4E5B9 + int(b)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & (2**63 - 1)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for, but no CUDA device is available")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], not {device!r}")
    return torch.device(device)

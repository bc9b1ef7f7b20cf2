"""The training stream: batches of images plus per-image extras, shuffled and augmented.

Mode ``memory`` (here) loads a split's ``images``/``labels`` and any extra per-image
arrays (saliency maps float ``[N,C,H,W]``, masks bool ``[N,1,H,W]``) once into memory
and indexes them by one shared permutation per epoch. On a GPU the arrays stay resident
in GPU memory when they fit in half of its free memory (:func:`storage_device`), else
in host RAM, each batch then gathered there and copied over; either way augmentation
runs on the training device, and the batches are the same. Every random choice of a
batch (its indices, crop offsets, flips) is a pure function of ``(seed, epoch, batch)``,
so a run resumed at batch ``k`` of an epoch sees exactly the batches it would have seen.

Geometric augmentation (random crop with zero padding, horizontal flip) runs batched on
the device and is applied with the same offsets and flips to the image and to every
extra array of that image, so maps never drift from their images (the PART bug in
notes/peers.md). The ``chunks`` mode (:mod:`pipeline.cache.stream_chunks`) has the same
interface (``num_batches``, ``batches(epoch, start)``); :mod:`pipeline.cache.streams`
registers both, and ``auto``, in :data:`~pipeline.cache.streams.STREAMS`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.cache.batch import Batch
from pipeline.cache.sources import ExtraSource, open_extras, read_all
from pipeline.cache.store import read_split
from pipeline.core.seeds import derive_seed

log = logging.getLogger(__name__)
RESIDENT = ("auto", "device", "host")


def free_memory(device: torch.device | str) -> int:
    """Free bytes of ``device``: GPU memory on CUDA, else available host RAM (8 GiB
    when the platform does not say)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def storage_device(
    nbytes: int,
    device: torch.device | str,
    resident: str = "auto",
    free: int | None = None,
    fraction: float = 0.5,
) -> torch.device:
    """Where a memory stream keeps its arrays for training on ``device``.

    Args:
        nbytes: bytes of the images plus every extra array.
        device: the training device. resident: ``auto`` (on ``device`` when ``nbytes``
            fits in ``fraction`` of its free memory, else on the host), ``device`` or
            ``host``. free: free bytes of ``device`` (None: asked, :func:`free_memory`).

    Returns:
        ``device`` or the CPU (always the CPU for a CPU ``device``).
    """
    device = torch.device(device)
    if resident not in RESIDENT:
        raise ValueError(f"resident must be one of {', '.join(RESIDENT)}, not {resident!r}")
    if device.type == "cpu" or resident == "device":
        return device
    if resident == "host":
        return torch.device("cpu")
    free = free_memory(device) if free is None else free
    return device if nbytes <= fraction * free else torch.device("cpu")


@dataclass(frozen=True)
class AugConfig:
    """Geometric augmentation applied on the device.

    Args:
        crop_padding: zero padding (pixels) before a random crop back to H x W; 0 = off.
        flip: random horizontal flip with probability 1/2.
    """

    crop_padding: int = 0
    flip: bool = False


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's shuffled order of ``range(n)`` (CPU, deterministic)."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, -1))
    return torch.randperm(n, generator=g)


def augment(
    tensors: list[torch.Tensor], aug: AugConfig, generator: torch.Generator
) -> list[torch.Tensor]:
    """Apply one random crop and flip per image to every tensor of the list identically.

    Args:
        tensors: ``[B, C_i, H, W]`` tensors (any dtype, same B, H, W, same device).
        aug: what to apply. generator: CPU generator drawing offsets and flips.

    Returns:
        The augmented tensors, same shapes and dtypes.
    """
    if not tensors or (aug.crop_padding == 0 and not aug.flip):
        return tensors
    b, _, h, w = tensors[0].shape
    dev = tensors[0].device
    p = aug.crop_padding
    oy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    flip = (
        torch.rand(b, generator=generator) < 0.5
        if aug.flip
        else torch.zeros(b, dtype=torch.bool)
    )
    cols = ox[:, None] + torch.arange(w)[None, :]  # [B, W] columns in the padded image
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reverses the columns
    rows = (oy[:, None] + torch.arange(h)[None, :]).to(dev)
    cols = cols.to(dev)
    out = []
    for t in tensors:
        tp = torch.nn.functional.pad(t, (p, p, p, p)) if p else t
        n_idx = torch.arange(b, device=dev)[:, None, None, None]
        c_idx = torch.arange(t.shape[1], device=dev)[None, :, None, None]
        out.append(tp[n_idx, c_idx, rows[:, None, :, None], cols[:, None, None, :]])
    return out


class MemoryStream:
    """All arrays of a split resident in memory (host or device), shuffled per epoch.

    Args:
        images: uint8 ``[N, C, H, W]``; labels: integer ``[N]``.
        saliency: source -> float ``[N, C', H, W]`` arrays (kept as float16 if given so).
        masks: source -> bool ``[N, 1, H, W]`` arrays.
        batch_size: images per batch; drop_last: drop the last partial batch.
        seed: seeds the permutation and augmentation; device: where batches go.
        aug: augmentation, applied identically to images, maps and masks (on
            ``device``).
        resident: where the arrays live, :func:`storage_device` (``auto``: on
            ``device`` when they fit in half its free memory, else host RAM).

    Shape (per batch):
        ``Batch.x`` float ``[B, C, H, W]`` in [0, 1]; ``y``, ``index`` long ``[B]``.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        aug: AugConfig = AugConfig(),
        drop_last: bool = False,
        saliency: Mapping[str, np.ndarray] | None = None,
        masks: Mapping[str, np.ndarray] | None = None,
        resident: str = "auto",
    ):
        self.device = torch.device(device)
        self.storage = torch.device("cpu")  # until every array is checked and counted
        self.images = torch.as_tensor(np.asarray(images))
        self.labels = torch.as_tensor(np.asarray(labels)).long()
        n = len(self.images)
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 [N,C,H,W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.shape != (n,):
            raise ValueError(f"labels shape {tuple(self.labels.shape)} != ({n},)")
        self.saliency = {k: self._extra(k, v, n) for k, v in (saliency or {}).items()}
        self.masks = {
            k: self._extra(k, v, n, torch.bool) for k, v in (masks or {}).items()
        }
        arrays = [self.images, *self.saliency.values(), *self.masks.values()]
        nbytes = sum(t.numel() * t.element_size() for t in arrays)
        self.storage = storage_device(nbytes, self.device, resident)
        if self.storage != torch.device("cpu"):
            self.images, self.labels = self.images.to(self.storage), self.labels.to(self.storage)
            self.saliency = {k: t.to(self.storage) for k, t in self.saliency.items()}
            self.masks = {k: t.to(self.storage) for k, t in self.masks.items()}
        if self.device.type != "cpu":
            log.info("memory stream: %.1f MB resident on %s, batches on %s", nbytes / 1e6,
                     self.storage, self.device)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.seed, self.aug, self.drop_last = (
            batch_size,
            seed,
            aug,
            drop_last,
        )

    @classmethod
    def from_store(
        cls,
        store,
        split: str,
        *,
        saliency: Sequence[str] = (),
        masks: Sequence[str] = (),
        prepare=None,
        extras: tuple[list[ExtraSource], list[ExtraSource]] | None = None,
        **kw,
    ) -> MemoryStream:
        """Load ``split`` (and the named cached sources) of a zarr store into memory;
        ``prepare(name, array)``, when given, transforms each map source once.
        ``extras``: the sources already opened by
        :func:`~pipeline.cache.sources.open_extras` (then not opened, nor checked, again)."""
        images, labels = read_split_arrays(store, split)
        maps, msk = extras or open_extras(store, split, saliency, masks, prepare)
        n = len(labels)
        return cls(images, labels, saliency=read_all(maps, n), masks=read_all(msk, n), **kw)

    def _extra(
        self, name: str, arr, n: int, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(arr))
        if t.ndim == 3:
            t = t[:, None]  # [N, H, W] masks get their channel axis
        if t.ndim != 4 or t.shape[0] != n or t.shape[2:] != self.images.shape[2:]:
            raise ValueError(
                f"extra array {name!r} has shape {tuple(t.shape)}; expected "
                f"[{n}, C, {self.images.shape[2]}, {self.images.shape[3]}]"
            )
        if dtype is not None:
            t = t.to(dtype)
        elif not t.is_floating_point():
            raise ValueError(
                f"saliency array {name!r} must be floating point, got {t.dtype}"
            )
        return t

    def __len__(self) -> int:
        return self.num_batches

    @property
    def num_samples(self) -> int:
        return len(self.images)

    @property
    def num_batches(self) -> int:
        n, b = len(self.images), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start, start+1, ...`` of ``epoch`` (0-based); resumable at any batch."""
        perm = epoch_permutation(len(self.images), self.seed, epoch)
        for k in range(start, self.num_batches):
            idx = perm[k * self.batch_size : (k + 1) * self.batch_size]
            yield self._batch(
                idx, torch.Generator().manual_seed(derive_seed(self.seed, epoch, k))
            )

    def _batch(self, idx: torch.Tensor, gen: torch.Generator) -> Batch:
        at, dev_idx = idx.to(self.storage), idx.to(self.device)
        sal_names, mask_names = list(self.saliency), list(self.masks)
        parts = [self.images[at]]
        parts += [self.saliency[k][at] for k in sal_names]
        parts += [self.masks[k][at] for k in mask_names]
        parts = [p.to(self.device) for p in parts]  # no copy when resident on device
        parts = augment(parts, self.aug, gen)
        x = parts[0].float().div_(255)
        sal = {k: parts[1 + i].float() for i, k in enumerate(sal_names)}
        off = 1 + len(sal_names)
        masks = {k: parts[off + i] for i, k in enumerate(mask_names)}
        return Batch(x=x, y=self.labels[at].to(self.device), index=dev_idx.long(),
                     saliency=sal, masks=masks)


def read_split_arrays(store, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``images`` uint8 ``[N,C,H,W]`` and ``labels`` ``[N]`` of ``split`` of a store.

    Raises:
        KeyError: naming the missing split.
    """
    arrays = read_split(store, split)
    return arrays.images, arrays.labels

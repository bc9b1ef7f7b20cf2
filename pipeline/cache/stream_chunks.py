"""The ``chunks`` stream mode: data sets larger than memory, read a chunk at a time.

Per epoch the chunks of the split are visited in a random order; groups of
``buffer_chunks`` consecutive chunks of that order form a shuffle buffer whose images are
permuted together, and batches are consecutive slices of the resulting order. A
background thread reads the chunks (images, labels and every extra: maps, masks) in the
order they are needed, ``prefetch`` ahead, so reading overlaps training; a read is always
a whole chunk (one contiguous slice of every array), never one random index per image.

Everything random is a function of ``(seed, epoch, batch)`` as in the memory stream, so
a run resumed at batch ``k`` sees the same batches; the augmentation is the memory
stream's :func:`~pipeline.cache.stream.augment` (one crop and flip per image applied to
the image and to every extra alike) with the same per-batch generator.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.cache.batch import Batch
from pipeline.cache.saliency_store import split_array
from pipeline.cache.sources import ExtraSource, open_extras
from pipeline.cache.store import read_array
from pipeline.cache.stream import AugConfig, augment, free_memory
from pipeline.core.seeds import derive_seed

Reader = Any  # an array-like sliced as ``arr[a:b]`` or a callable ``(a, b) -> array``


def _read(reader: Reader, a: int, b: int) -> np.ndarray:
    if callable(reader):
        return np.asarray(reader(a, b))
    return read_array(reader, slice(a, b))  # a chunk that does not decode: StoreError


def epoch_order(n: int, chunk: int, buffer_chunks: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's image order: chunks shuffled, then images shuffled within each group of
    ``buffer_chunks`` consecutive chunks of that order (deterministic)."""
    n_chunks = -(-n // chunk)
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, -2))
    chunk_perm = torch.randperm(n_chunks, generator=g).numpy()
    parts = []
    for gi in range(0, n_chunks, buffer_chunks):
        idx = np.concatenate([np.arange(c * chunk, min((c + 1) * chunk, n))
                              for c in chunk_perm[gi:gi + buffer_chunks]])
        p = torch.randperm(len(idx), generator=g).numpy()
        parts.append(idx[p])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class ChunkStream:
    """Batches read chunk by chunk with a shuffle buffer and a prefetch thread.

    Args:
        images: uint8 ``[N, C, H, W]`` reader (a zarr array, or ``(a, b) -> array``).
        labels: integer ``[N]`` (read whole: small).
        chunk: images per read (the store's chunk length, so a read decodes whole chunks).
        batch_size, seed, device, aug, drop_last: as :class:`~pipeline.cache.stream.MemoryStream`.
        saliency: source -> reader of float ``[N, C', H, W]``; masks: source -> reader of
            bool ``[N, 1, H, W]`` (``[N, H, W]`` accepted).
        buffer_chunks: chunks shuffled together (4). prefetch: chunks read ahead (2).
        shape: ``(N, C, H, W)`` when ``images`` is a callable.

    Shape (per batch):
        ``Batch.x`` float ``[B, C, H, W]`` in [0, 1]; ``y``, ``index`` long ``[B]``.
    """

    def __init__(self, images: Reader, labels, *, chunk: int, batch_size: int,
                 seed: int = 0, device: str | torch.device = "cpu",
                 aug: AugConfig | None = None, drop_last: bool = False,
                 saliency: Mapping[str, Reader] | None = None,
                 masks: Mapping[str, Reader] | None = None,
                 buffer_chunks: int = 4, prefetch: int = 2,
                 shape: tuple[int, int, int, int] | None = None):
        self.images, self.shape = images, tuple(shape or images.shape)
        self.labels = torch.as_tensor(np.asarray(labels)).long()
        if len(self.shape) != 4 or self.labels.shape != (self.shape[0],):
            raise ValueError(f"images {self.shape} and labels {tuple(self.labels.shape)} "
                             "do not match ([N, C, H, W] and [N])")
        if min(chunk, batch_size, buffer_chunks, prefetch) < 1:
            raise ValueError("chunk, batch_size, buffer_chunks and prefetch must be >= 1")
        self.saliency, self.masks = dict(saliency or {}), dict(masks or {})
        self.chunk, self.batch_size, self.seed = int(chunk), int(batch_size), seed
        self.device, self.drop_last = torch.device(device), drop_last
        self.aug = aug if aug is not None else AugConfig()
        self.buffer_chunks, self.prefetch = int(buffer_chunks), int(prefetch)

    @classmethod
    def from_store(cls, store, split: str, *, saliency: Sequence[str] = (),
                   masks: Sequence[str] = (), prepare=None,
                   extras: tuple[list[ExtraSource], list[ExtraSource]] | None = None,
                   **kw) -> ChunkStream:
        """Stream ``split`` of an open zarr store chunk by chunk (chunk = the images'
        chunk length along N), with the named cached sources as maps (through
        ``prepare(name, array)`` per chunk) and salience masks. ``extras``: the sources
        already opened by :func:`~pipeline.cache.sources.open_extras`."""
        images = split_array(store, split, "images")
        labels = read_array(split_array(store, split, "labels"))
        maps, msk = extras or open_extras(store, split, saliency, masks, prepare)
        stream = cls(images, labels, chunk=int(images.chunks[0]),
                     saliency={s.name: s.read for s in maps},
                     masks={s.name: s.read for s in msk}, **kw)
        stream.mode = "chunks"
        return stream

    def __len__(self) -> int:
        return self.num_batches

    @property
    def num_samples(self) -> int:
        return self.shape[0]

    @property
    def num_batches(self) -> int:
        n, b = self.shape[0], self.batch_size
        return n // b if self.drop_last else -(-n // b)

    # -- reading --------------------------------------------------------------------
    def _load_chunk(self, c: int) -> dict[str, np.ndarray]:
        a, b = c * self.chunk, min((c + 1) * self.chunk, self.shape[0])
        out = {"images": _read(self.images, a, b)}
        for k, r in self.saliency.items():
            out["s:" + k] = _read(r, a, b)
        for k, r in self.masks.items():
            m = _read(r, a, b).astype(bool)
            out["m:" + k] = m[:, None] if m.ndim == 3 else m
        return out

    @staticmethod
    def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
        """Put ``item`` unless the consumer has stopped; False when it has."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _producer(self, chunks: list[int], q: queue.Queue, stop: threading.Event) -> None:
        try:
            for c in chunks:
                if not self._put(q, (c, self._load_chunk(c)), stop):
                    return
        except Exception as err:  # noqa: BLE001  (re-raised by the consumer, chained)
            self._put(q, (-1, err), stop)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start, start+1, ...`` of ``epoch``; resumable at any batch."""
        order = epoch_order(self.shape[0], self.chunk, self.buffer_chunks, self.seed, epoch)
        order = order[:self.num_batches * self.batch_size]
        rest = order[start * self.batch_size:]
        cids = rest // self.chunk
        # chunks in first-use order and the batch of their last use (to free them)
        first = dict.fromkeys(cids.tolist())
        last_use = {int(c): i // self.batch_size + start for i, c in enumerate(cids)}
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._producer, args=(list(first), q, stop),
                                  daemon=True, name="chunk-prefetch")
        worker.start()
        loaded: dict[int, dict[str, np.ndarray]] = {}
        try:
            for k in range(start, self.num_batches):
                idx = order[k * self.batch_size:(k + 1) * self.batch_size]
                need = np.unique(idx // self.chunk)
                while any(int(c) not in loaded for c in need):
                    c, data = q.get()
                    if c < 0:
                        if isinstance(data, (ValueError, KeyError)):
                            raise data  # a bad-input error (NaN map, damaged chunk) as is
                        raise RuntimeError(
                            f"chunk stream: reading a chunk failed: {data}") from data
                    loaded[c] = data
                yield self._batch(idx, loaded, epoch, k)
                for c in need:
                    if last_use[int(c)] == k:
                        del loaded[int(c)]
        finally:
            stop.set()
            worker.join(timeout=5)

    def _gather(self, idx: np.ndarray, loaded: dict, key: str) -> np.ndarray:
        cid = idx // self.chunk
        first = loaded[int(cid[0])][key]
        out = np.empty((len(idx),) + first.shape[1:], first.dtype)
        for c in np.unique(cid):
            sel = cid == c
            out[sel] = loaded[int(c)][key][idx[sel] - c * self.chunk]
        return out

    def _batch(self, idx: np.ndarray, loaded: dict, epoch: int, k: int) -> Batch:
        dev = self.device
        keys = ["images"] + ["s:" + s for s in self.saliency] + ["m:" + m for m in self.masks]
        parts = [torch.from_numpy(self._gather(idx, loaded, key)).to(dev) for key in keys]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, k))
        parts = augment(parts, self.aug, gen)
        x = parts[0].float().div_(255)
        ns = len(self.saliency)
        sal = {s: parts[1 + i].float() for i, s in enumerate(self.saliency)}
        masks = {m: parts[1 + ns + i] for i, m in enumerate(self.masks)}
        index = torch.from_numpy(idx.astype(np.int64)).to(dev)
        return Batch(x=x, y=self.labels[index.cpu()].to(dev), index=index,
                     saliency=sal, masks=masks)


def choose_stream_mode(nbytes: int, device: torch.device | str, fraction: float = 0.5) -> str:
    """``memory`` when ``nbytes`` (images + every extra) fits in ``fraction`` of the free
    memory of ``device`` (GPU memory on CUDA) or, on a GPU, of the host RAM (the memory
    stream then keeps its arrays on the host, :func:`~pipeline.cache.stream.storage_device`);
    else ``chunks``."""
    device = torch.device(device)
    places = [device] if device.type == "cpu" else [device, torch.device("cpu")]
    fits = any(nbytes <= fraction * free_memory(d) for d in places)
    return "memory" if fits else "chunks"

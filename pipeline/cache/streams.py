"""The training stream modes, registered in one place: ``memory``, ``chunks``, ``auto``.

A mode is a class with ``from_store(store, split, *, saliency, masks, prepare, extras,
**kw)`` returning an object with ``num_batches`` and ``batches(epoch, start)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.cache.saliency_store import split_array
from pipeline.cache.sources import ExtraSource, open_extras
from pipeline.cache.stream import MemoryStream
from pipeline.cache.stream_chunks import ChunkStream, choose_stream_mode
from pipeline.core.registry import Registry

STREAMS = Registry("stream mode")
STREAMS.register("memory")(MemoryStream)
STREAMS.register("chunks")(ChunkStream)


@STREAMS.register("auto")
class AutoStream:
    """``memory`` when the split's images plus the named sources fit (half the free
    device or host memory, :func:`choose_stream_mode`), else ``chunks``; a factory only
    (``from_store`` returns the chosen stream with its ``mode`` set)."""

    @classmethod
    def from_store(cls, store, split: str, *, saliency: Sequence[str] = (),
                   masks: Sequence[str] = (), prepare=None,
                   extras: tuple[list[ExtraSource], list[ExtraSource]] | None = None,
                   **kw):
        images = split_array(store, split, "images")
        extras = extras or open_extras(store, split, saliency, masks, prepare)
        nbytes = int(np.prod(images.shape)) + sum(s.nbytes for s in [*extras[0], *extras[1]])
        mode = choose_stream_mode(nbytes, kw.get("device", "cpu"))
        stream = STREAMS.get(mode).from_store(store, split, extras=extras, **kw)
        stream.mode = mode
        return stream

"""The chunks stream: alignment of images, maps and masks under shuffle and augmentation,
whole-chunk reads only, every image once per epoch, exact resume, memory-mode parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.cache import STREAMS
from pipeline.cache.stream import AugConfig, MemoryStream
from pipeline.cache.stream_chunks import ChunkStream, choose_stream_mode, epoch_order

N, C, H, W, CHUNK = 70, 3, 12, 12, 16
AUG = AugConfig(crop_padding=2, flip=True)


def content() -> np.ndarray:
    """Each image's pixels encode its index and position (no symmetry, never 0)."""
    i, c, h, w = np.meshgrid(np.arange(N), np.arange(C), np.arange(H), np.arange(W),
                             indexing="ij")
    return ((i * 7 + c * 3 + h * 11 + w * 5) % 250 + 1).astype(np.uint8)


class CountingReader:
    """An array-like that records every slice read."""

    def __init__(self, arr):
        self.arr, self.shape, self.reads = arr, arr.shape, []

    def __getitem__(self, sl):
        self.reads.append((sl.start, sl.stop))
        return self.arr[sl]


def streams(seed=0, batch_size=8):
    x = content()
    labels = np.arange(N) % 5
    sal = x.astype(np.float16)  # the map is the image itself
    mask = x[:, :1] > 128
    images = CountingReader(x)
    chunks = ChunkStream(images, labels, chunk=CHUNK, batch_size=batch_size, seed=seed,
                         aug=AUG, saliency={"s": CountingReader(sal)},
                         masks={"m": lambda a, b: mask[a:b, 0]}, buffer_chunks=2)
    memory = MemoryStream(x, labels, batch_size=batch_size, seed=seed, aug=AUG,
                          saliency={"s": sal}, masks={"m": mask})
    return chunks, memory, images, x


def _is_augmented_copy(xb: np.ndarray, orig: np.ndarray, p: int = 2) -> bool:
    padded = np.pad(orig, ((0, 0), (p, p), (p, p)))
    for oy in range(2 * p + 1):
        for ox in range(2 * p + 1):
            crop = padded[:, oy:oy + H, ox:ox + W]
            if np.array_equal(crop, xb) or np.array_equal(crop[:, :, ::-1], xb):
                return True
    return False


@pytest.mark.parametrize("mode", ["chunks", "memory"])
def test_alignment_under_shuffle_and_augmentation(mode):
    chunks, memory, _, x = streams()
    stream = chunks if mode == "chunks" else memory
    seen = []
    flipped_or_shifted = 0
    for b in stream.batches(epoch=1):
        xb = (b.x * 255).round().to(torch.uint8)
        assert torch.equal(b.saliency["s"], b.x * 255)  # map moved with its image
        assert torch.equal(b.masks["m"], xb[:, :1] > 128)  # mask too (padding: 0, False)
        assert torch.equal(b.y, b.index % 5)
        for j, i in enumerate(b.index.tolist()):
            assert _is_augmented_copy(xb[j].numpy(), x[i])
            flipped_or_shifted += not np.array_equal(xb[j].numpy(), x[i])
        seen += b.index.tolist()
    assert sorted(seen) == list(range(N))  # every image once per epoch
    assert flipped_or_shifted > N // 2  # the augmentation did something
    assert seen != list(range(N))  # and the order is shuffled


def test_reads_whole_chunks_only_and_shuffles_across_chunks():
    chunks, _, images, _ = streams()
    order = [i for b in chunks.batches(epoch=0) for i in b.index.tolist()]
    assert all(a % CHUNK == 0 and (b == a + CHUNK or b == N) for a, b in images.reads)
    assert len(images.reads) == -(-N // CHUNK)  # each chunk read once per epoch
    # the first batch mixes images of more than one chunk (the shuffle buffer)
    assert len({i // CHUNK for i in order[:8]}) > 1
    other = [i for b in chunks.batches(epoch=1) for i in b.index.tolist()]
    assert other != order


def test_resume_mid_epoch_is_exact():
    chunks, _, _, _ = streams()
    full = list(chunks.batches(epoch=2))
    tail = list(chunks.batches(epoch=2, start=3))
    assert len(tail) == len(full) - 3
    for a, b in zip(full[3:], tail):
        assert torch.equal(a.x, b.x) and torch.equal(a.index, b.index)
        assert torch.equal(a.saliency["s"], b.saliency["s"])


def test_epoch_order_is_a_permutation_and_registered():
    o = epoch_order(100, 16, 3, seed=1, epoch=0)
    assert sorted(o.tolist()) == list(range(100))
    assert STREAMS.get("chunks") is ChunkStream
    assert choose_stream_mode(1 << 10, "cpu") == "memory"
    assert choose_stream_mode(1 << 62, "cpu") == "chunks"


def test_reader_error_surfaces():
    def broken(a, b):
        raise OSError("disk gone")

    s = ChunkStream(broken, np.zeros(20), chunk=10, batch_size=4, shape=(20, 1, 4, 4))
    with pytest.raises(RuntimeError, match="reading a chunk failed"):
        list(s.batches(0))

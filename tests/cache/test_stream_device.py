"""Where the memory stream keeps its arrays (GPU memory when they fit, else host RAM),
and that where they live never changes a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.cache import stream as stream_mod
from pipeline.cache.stream import (
    AugConfig,
    MemoryStream,
    augment,
    epoch_permutation,
    storage_device,
)
from pipeline.cache.stream_chunks import choose_stream_mode
from pipeline.core.seeds import derive_seed

AUG = AugConfig(crop_padding=3, flip=True)


def _arrays(n=40):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return x, rng.integers(0, 5, n), {"m.map": rng.standard_normal(x.shape).astype(np.float16)}, {
        "m.mask": rng.random((n, 1, 8, 8)) > 0.5}


def test_storage_device_choice():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert storage_device(10**12, cpu) == cpu  # a CPU run keeps them where it trains
    assert storage_device(100, cuda, free=1000) == cuda  # fits half the free memory
    assert storage_device(600, cuda, free=1000) == cpu  # does not: host RAM
    assert storage_device(600, cuda, "device", free=1000) == cuda
    assert storage_device(100, cuda, "host", free=1000) == cpu
    with pytest.raises(ValueError, match="resident must be one of auto, device, host"):
        storage_device(1, cuda, "gpu")


def test_auto_mode_takes_memory_when_host_ram_holds_what_the_gpu_cannot(monkeypatch):
    free = {"cuda": 1000, "cpu": 10_000}
    monkeypatch.setattr("pipeline.cache.stream_chunks.free_memory",
                        lambda d: free[torch.device(d).type])
    assert choose_stream_mode(400, "cuda") == "memory"  # resident on the GPU
    assert choose_stream_mode(4000, "cuda") == "memory"  # resident on the host
    assert choose_stream_mode(40_000, "cuda") == "chunks"
    assert choose_stream_mode(4000, "cpu") == "memory"
    assert choose_stream_mode(40_000, "cpu") == "chunks"


def _reference_batches(x, y, sal, masks, batch_size, seed, epoch):
    """The batches as the memory stream has always made them: one permutation per
    epoch, one generator per batch, the same crop and flip on every array."""
    perm = epoch_permutation(len(x), seed, epoch)
    for k in range(-(-len(x) // batch_size)):
        idx = perm[k * batch_size:(k + 1) * batch_size]
        gen = torch.Generator().manual_seed(derive_seed(seed, epoch, k))
        parts = [torch.as_tensor(x)[idx], torch.as_tensor(sal["m.map"])[idx],
                 torch.as_tensor(masks["m.mask"])[idx]]
        px, ps, pm = augment(parts, AUG, gen)
        yield px.float() / 255, ps.float(), pm, torch.as_tensor(y).long()[idx], idx


@pytest.mark.parametrize("resident", ["auto", "host", "device"])
def test_cpu_batches_are_those_of_the_reference(resident):
    x, y, sal, masks = _arrays()
    s = MemoryStream(x, y, batch_size=16, seed=3, aug=AUG, saliency=sal, masks=masks,
                     resident=resident)
    assert s.storage == torch.device("cpu")
    got = list(s.batches(1))
    want = list(_reference_batches(x, y, sal, masks, 16, 3, 1))
    assert len(got) == len(want) == 3
    for b, (rx, rs, rm, ry, ri) in zip(got, want, strict=True):
        assert torch.equal(b.x, rx) and torch.equal(b.saliency["m.map"], rs)
        assert torch.equal(b.masks["m.mask"], rm) and torch.equal(b.y, ry)
        assert torch.equal(b.index, ri)


def test_host_fallback_when_the_gpu_is_short(monkeypatch):
    """A CUDA device whose free memory is too small: the arrays stay on the host."""
    monkeypatch.setattr(stream_mod, "free_memory", lambda d: 10)
    assert storage_device(1000, "cuda") == torch.device("cpu")


@pytest.mark.gpu
def test_cuda_resident_and_host_fallback_give_the_cpu_batches():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, y, sal, masks = _arrays()
    kw = {"batch_size": 16, "seed": 3, "aug": AUG, "saliency": sal, "masks": masks}
    on_gpu = MemoryStream(x, y, device="cuda", **kw)
    on_host = MemoryStream(x, y, device="cuda", resident="host", **kw)
    cpu = MemoryStream(x, y, **kw)
    assert on_gpu.storage.type == "cuda" and on_gpu.images.is_cuda
    assert on_host.storage.type == "cpu" and not on_host.images.is_cuda
    for a, b, c in zip(on_gpu.batches(0), on_host.batches(0), cpu.batches(0), strict=True):
        assert a.x.is_cuda and b.x.is_cuda and b.masks["m.mask"].is_cuda
        for t in ("x", "y", "index"):
            assert torch.equal(getattr(a, t).cpu(), getattr(c, t))
            assert torch.equal(getattr(b, t).cpu(), getattr(c, t))
        assert torch.equal(a.saliency["m.map"].cpu(), c.saliency["m.map"])
        assert torch.equal(b.masks["m.mask"].cpu(), c.masks["m.mask"])

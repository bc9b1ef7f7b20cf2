"""Training-stream throughput next to a narrow ResNet-10 training step, both stream modes,
measured side by side in one run.

    .venv/bin/python benchmarks/stream.py [--n 4096] [--batch 128] [--threads 1] [--device cpu]

A temporary Zarr store (random 3x32x32 uint8 images in chunks of 512, as
``prepare-data`` writes them) with one cached saliency source (float16 map and
bit-packed mask) is streamed with crop-4 + flip augmentation applied to image, map and
mask. Printed: images/s of the ``memory`` stream (arrays resident, loading excluded),
of the ``chunks`` stream (reading, decoding and prefetching included), and of one
training step (resnet10 width 16, SGD, cross-entropy forward + backward + update) on
the same batches; the ratio stream / step must be >= 10 in both modes (issue 5).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_store(path: Path, n: int, chunk: int = 512):
    import zarr
    from zarr.codecs import BloscCodec

    from pipeline.cache import layout
    from pipeline.cache.bits import pack_bits
    from pipeline.cache.saliency_store import create_source

    rng = np.random.default_rng(0)
    g = zarr.open_group(str(path), mode="w")
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    comp = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
    g.create_array(layout.images_path("train"), data=x, chunks=(chunk, 3, 32, 32),
                   compressors=comp)
    g.create_array(layout.labels_path("train"), data=rng.integers(0, 10, n).astype(np.int16),
                   chunks=(chunk,))
    grp = create_source(g, "train", "bench.gbp", shape=x.shape, chunk=chunk,
                        with_bbox=False, attrs={})
    m = rng.standard_normal(x.shape).astype(np.float16)
    grp["map"][:] = m
    grp["mask"][:] = pack_bits(np.abs(m).sum(1) > 2.4)
    grp.attrs.update({"complete": True})
    return g


def stream_rate(stream, epochs: int = 2) -> float:
    n, t0 = 0, time.perf_counter()
    for e in range(epochs):
        for b in stream.batches(e):
            n += len(b.y)
    return n / (time.perf_counter() - t0)


def step_rate(stream, device, steps: int) -> float:
    from pipeline.models import build_model

    model = build_model("resnet10", 10, width=16).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = []
    for b in stream.batches(0):
        batches.append(b)
        if len(batches) == steps + 2:
            break

    def step(b):
        loss = torch.nn.functional.cross_entropy(model(b.x), b.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for b in batches[:2]:  # warm-up
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for b in batches[2:]:
        step(b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(batches[2].y) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from pipeline.cache.stream import AugConfig, MemoryStream
    from pipeline.cache.stream_chunks import ChunkStream

    aug = AugConfig(crop_padding=4, flip=True)
    with tempfile.TemporaryDirectory() as tmp:
        g = make_store(Path(tmp) / "bench.zarr", args.n)
        kw = {"batch_size": args.batch, "seed": 0, "device": device, "aug": aug,
              "saliency": ["bench.gbp"], "masks": ["bench.gbp"]}
        memory = MemoryStream.from_store(g, "train", **kw)
        chunks = ChunkStream.from_store(g, "train", **kw)
        rates = {"memory": stream_rate(memory), "chunks": stream_rate(chunks)}
        train = step_rate(memory, device, args.steps)
    print(f"device {device}, {args.threads} thread(s), {args.n} images 3x32x32 + map + mask, "
          f"batch {args.batch}, crop 4 + flip")
    print(f"{'mode':8s} {'stream img/s':>13s} {'step img/s':>11s} {'stream/step':>12s}  target")
    for mode, r in rates.items():
        ok = "ok" if r >= 10 * train else "MISSED"
        print(f"{mode:8s} {r:13.0f} {train:11.0f} {r / train:11.1f}x  >= 10x {ok}")


if __name__ == "__main__":
    main()

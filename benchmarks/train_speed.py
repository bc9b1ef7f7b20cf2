"""Images/s of one training step per method, measured side by side in one run.

Usage: ``python benchmarks/train_speed.py [--arch resnet10 --width 16 --size 32
--batch 128 --steps 3 --threads 1 --device cpu]``. Prints images/s of ``standard``,
``pgd_at`` (5 and 10 steps) and ``trades`` (10 steps), and each as a ratio to standard.
Synthetic inputs (the step's cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import time

import torch


def step_rate(model, method, batch, ctx, opt, steps: int) -> tuple[float, float]:
    """(images per wall second, images per process-CPU second) of ``steps`` full
    optimiser steps after one warm-up step. With one thread on a shared machine the
    CPU-second rate is the steadier number (other processes inflate wall time)."""

    def one():
        loss = method.batch_loss(model, batch, ctx).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()
    if batch.x.is_cuda:
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        one()
    if batch.x.is_cuda:
        torch.cuda.synchronize()
    n = steps * len(batch.y)
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet10")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from pipeline.config import build_method
    from pipeline.core.seeds import resolve_device
    from pipeline.models import build_model
    from pipeline.train import TRAINING, Batch, StepContext

    dev = resolve_device(a.device)
    torch.manual_seed(0)
    model = build_model(a.arch, 10, width=a.width).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(a.batch, 3, a.size, a.size, device=dev)
    y = torch.randint(0, 10, (a.batch,), device=dev)
    batch = Batch(x=x, y=y, index=torch.arange(a.batch, device=dev))
    ctx = StepContext(epoch=0, epochs=1, step=0, device=dev, num_classes=10,
                      bn_mode="eval", generator=torch.Generator(device=dev).manual_seed(0))
    cases = [
        ("standard", {}),
        ("pgd_at", {"steps": 5}),
        ("pgd_at", {"steps": 10}),
        ("trades", {"steps": 10}),
    ]
    print(
        f"{a.arch} width {a.width}, {a.size}x{a.size}, batch {a.batch}, {dev}, "
        f"{a.threads} thread(s), {a.steps} timed steps each"
    )
    base = None
    print(f"{'method':22s} {'img/s wall':>10s} {'img/CPU-s':>10s} {'ratio (CPU)':>12s}")
    for name, params in cases:
        wall, cpu = step_rate(
            model, build_method(TRAINING, name, params, name), batch, ctx, opt, a.steps
        )
        base = base or cpu
        label = name + "".join(f" {k}={v}" for k, v in params.items())
        print(f"{label:22s} {wall:10.1f} {cpu:10.1f} {cpu / base:11.3f}x")


if __name__ == "__main__":
    main()

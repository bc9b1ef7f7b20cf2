"""Throughput of training steps and of an evaluation attack under bf16 autocast,
channels_last and torch.compile, as ratios to fp32, measured side by side in one run.

    .venv/bin/python benchmarks/precision.py [--arch resnet10 --width 16 --batch 128
        --steps 2 --rounds 3 --threads 1 --device cpu --train-pgd 3 --eval-pgd 10
        --no-compile]

Model ``--arch`` / ``--width`` (the tiny/cpu/cifar_quick sweeps' narrow ResNet-10 by
default), 10 classes, random weights (throughput does not depend on training), on one
batch of the CIFAR-10 subset in ``../shared/data/cifar10`` (random images when absent).
Workloads, each through the loop's own helpers (:func:`pipeline.train.loop.step_autocast`,
:class:`pipeline.train.loop.CompiledForward`):

* ``standard``: one ``standard`` training step (forward, loss, backward, SGD update);
* ``pgd_at``: one ``pgd_at`` step with its inner PGD (``--train-pgd`` steps, eps 8/255,
  step 2.5/255, BN in eval mode while crafting: the sweeps' threat), all under autocast;
* ``eval PGD``: the evaluation attack (``pgd``, ``--eval-pgd`` steps, eps 8/255) on the
  model in eval mode. The evaluate stage always runs it in fp32; the other columns say
  only what a faster evaluation would cost us, and are never used.

Variants: fp32 (baseline), bf16, channels_last, bf16 + channels_last, compile, and
compile + bf16 + channels_last. Every variant runs every workload ``--steps`` times per
round, variants interleaved round after round (one warm-up call each first, which for
the compiled variants includes compilation, printed separately), keeping each one's
fastest round. On a shared machine only these ratios, measured in one run, mean anything;
the ratio column uses process CPU seconds (steadier than wall time with one thread).
"""

from __future__ import annotations

import argparse
import copy
import pickle
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar-10-batches-py" / "data_batch_1"

# name -> (precision, channels_last, compile)
VARIANTS = {
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "channels_last": ("fp32", True, False),
    "bf16+channels_last": ("bf16", True, False),
    "compile": ("fp32", False, True),
    "compile+bf16+cl": ("bf16", True, True),
}


def load_batch(n: int, device) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` CIFAR-10 training-subset images in [0, 1] with labels, or random ones."""
    if CIFAR.is_file():
        with open(CIFAR, "rb") as f:  # the project's own shared data, CIFAR's pickle layout
            d = pickle.load(f, encoding="bytes")
        x = torch.tensor(d[b"data"][:n]).view(-1, 3, 32, 32).float() / 255
        y, what = torch.tensor(d[b"labels"][:n]), "CIFAR-10 subset images"
    else:
        x, y, what = torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,)), "random images"
    return x.to(device), y.to(device), what


def workloads(model, x, y, variant, dev, train_pgd: int, eval_pgd: int) -> dict:
    """The three timed callables of one variant (its own model copy and optimiser)."""
    from pipeline.attacks import ATTACKS
    from pipeline.config import build_method
    from pipeline.train import TRAINING, Batch, StepContext
    from pipeline.train.loop import step_autocast

    precision, channels_last, _ = VARIANTS[variant]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    batch = Batch(x=x, y=y, index=torch.arange(len(y), device=dev))
    ctx = StepContext(epoch=0, epochs=1, step=0, device=dev, num_classes=10,
                      bn_mode="eval", generator=torch.Generator(dev).manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    std = build_method(TRAINING, "standard", {}, "standard")
    pgd_at = build_method(TRAINING, "pgd_at", {"steps": train_pgd,
                                                "step_size": "2.5/255"}, "pgd_at")
    attack = ATTACKS.get("pgd")(eps=8 / 255, steps=eval_pgd)

    def step(method):
        model.train()
        with step_autocast(precision, dev):
            loss = method.batch_loss(model, batch, ctx).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def evaluate():
        model.eval()
        with step_autocast(precision, dev):
            attack(model, x, y)

    return {"standard": lambda: step(std), f"pgd_at (PGD-{train_pgd})": lambda: step(pgd_at),
            f"eval PGD-{eval_pgd}": evaluate}


def timed(fn, dev) -> tuple[float, float]:
    """(wall s, process CPU s) of one call."""
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="resnet10")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-pgd", type=int, default=3)
    ap.add_argument("--eval-pgd", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    ap.add_argument("--variants", default="", help="comma-separated subset of the variants")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from pipeline.core.seeds import resolve_device
    from pipeline.models import build_model
    from pipeline.train.loop import CompiledForward

    dev = resolve_device(a.device)
    names = [v for v in (a.variants.split(",") if a.variants else VARIANTS)
             if v and not (a.no_compile and VARIANTS[v][2])]
    if "fp32" not in names:
        names.insert(0, "fp32")
    torch.manual_seed(0)
    init = build_model(a.arch, 10, width=a.width).to(dev)
    x, y, what = load_batch(a.batch, dev)
    runs, warm = {}, {}
    for v in names:
        model = copy.deepcopy(init)
        if VARIANTS[v][1]:
            model.to(memory_format=torch.channels_last)
        if VARIANTS[v][2]:
            CompiledForward(model)
        runs[v] = workloads(model, x, y, v, dev, a.train_pgd, a.eval_pgd)
        warm[v] = sum(timed(fn, dev)[0] for fn in runs[v].values())  # compiles here
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(a.rounds):
        for v in names:
            for w, fn in runs[v].items():
                t = [timed(fn, dev) for _ in range(a.steps)]
                wall, cpu = sum(s[0] for s in t), sum(s[1] for s in t)
                if (v, w) not in best or cpu < best[(v, w)][1]:
                    best[(v, w)] = (wall, cpu)
    print(f"{a.arch} width {a.width}, batch {a.batch} of {what} 3x32x32, {dev}, "
          f"{a.threads} thread(s); {a.steps} calls x {a.rounds} rounds, fastest kept")
    print(f"{'workload':18s} {'variant':20s} {'img/s wall':>10s} {'img/CPU-s':>10s} "
          f"{'x fp32 (CPU)':>13s} {'x fp32 (wall)':>13s}")
    n = a.steps * a.batch
    for w in runs["fp32"]:
        base = best[("fp32", w)]
        for v in names:
            wall, cpu = best[(v, w)]
            print(f"{w:18s} {v:20s} {n / wall:10.1f} {n / cpu:10.1f} "
                  f"{base[1] / cpu:12.2f}x {base[0] / wall:12.2f}x")
    for v in names:
        if VARIANTS[v][2]:
            print(f"{v}: first call of the three workloads (compilation) {warm[v]:.1f} s "
                  f"wall (fp32: {warm['fp32']:.1f} s)")
    print("the evaluate stage runs its attacks in fp32: the eval PGD rows are measured, "
          "never used")


if __name__ == "__main__":
    main()

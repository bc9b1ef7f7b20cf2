"""Per-epoch cost of every registered training method on the same model and data, as
ratios to ``standard``, measured in one run.

    .venv/bin/python benchmarks/epoch_cost.py [--n 512] [--batch 32] [--threads 1]
        [--device cpu] [--methods sat,pgd_at,...]

Model ``resnet10`` width 16, 10 classes, SGD; ``--n`` random 3x32x32 images streamed
by the memory stream (crop 4 + flip) with one float16 saliency map (stage-two map
methods) and one salience mask (``sip_at``) as extras. Every method runs with its
defaults (eps 8/255, 10 inner steps where it has them), except the Int family at full eps
(``ramp_end=0``: no eps ramp; while its eps is 0 it skips the inner PGD), and at epoch 5
for all. One epoch each, same initial weights, timed around the loop's work
(batch_loss, backward, step).
The machine may be shared, so every method's epoch is timed in wall-clock and in
process CPU seconds, and the cheap methods (one forward/backward per batch:
``standard``, ``sat``, ``uniform_noise``) run ``--rounds`` times interleaved, keeping
each one's fastest round; the ratios use CPU seconds.

Targets (issue 5): ``sat`` <= 1.10x standard; ``pgd_sat`` (p = 0.5) <= 0.6x ``pgd_at``.
``pgd_sat`` and ``trades_sat`` flip one coin per batch, so their time depends on how
many batches took the SAT branch; the realised share is printed with them, and the
cost at exactly p = 0.5 is estimated from the branch costs (``sat`` and ``pgd_at``).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

SKIP_KW = {"int": {"ramp_end": 0.0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default="")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    import pipeline.train.pgd_sat as pgd_sat_mod
    import pipeline.train.trades_sat as trades_sat_mod
    from pipeline.cache.stream import AugConfig, MemoryStream
    from pipeline.models import build_model
    from pipeline.train import TRAINING, StepContext

    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, 256, (args.n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, args.n)
    s = rng.standard_normal(x.shape).astype(np.float16)
    stream = MemoryStream(x, y, batch_size=args.batch, seed=args.seed, device=dev,
                          aug=AugConfig(crop_padding=4, flip=True),
                          saliency={"bench.gbp": s}, masks={"bench.mask": np.abs(s).sum(1) > 2.4})
    torch.manual_seed(args.seed)
    init = build_model("resnet10", 10, width=16).to(dev)

    coins: list[bool] = []
    real_coin = pgd_sat_mod.coin

    def counting_coin(p, g, d):
        c = real_coin(p, g, d)
        coins.append(c)
        return c

    pgd_sat_mod.coin = trades_sat_mod.coin = counting_coin
    names = [m for m in args.methods.split(",") if m] or TRAINING.names()
    if "standard" not in names:
        names = ["standard"] + names
    names = ["standard"] + [m for m in names if m != "standard"]

    def run(name: str) -> tuple[float, float, str]:
        cls = TRAINING.get(name)
        kw = SKIP_KW["int"] if name.startswith("int") else {}
        method = cls(**kw)
        model = copy.deepcopy(init).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        ctx = StepContext(epoch=5, epochs=10, step=0, device=dev, num_classes=10,
                          bn_mode="eval", generator=torch.Generator(dev).manual_seed(1))
        coins.clear()
        method.on_epoch_start(model, ctx)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in stream.batches(0):
            if not getattr(method, "needs_saliency", False):
                b.saliency, b.masks = {}, {}
            elif getattr(method, "saliency_kind", "map") == "mask":
                b.saliency = {}
            else:
                b.masks = {}
            loss = method.batch_loss(model, b, ctx).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ctx.step += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
        note = f"SAT branch {sum(coins)}/{len(coins)} batches" if coins else ""
        return time.perf_counter() - t0, time.process_time() - c0, note

    run("standard")  # warm-up (allocator, kernels)
    cheap = [m for m in names if m in ("standard", "sat", "uniform_noise")]
    wall, secs, notes = {}, {}, {}
    for r in range(args.rounds):
        for name in cheap if r else names:
            w, c, note = run(name)
            if name not in secs or c < secs[name]:
                wall[name], secs[name], notes[name] = w, c, note
    base = secs["standard"]
    print(f"device {dev}, {args.threads} thread(s); resnet10 width 16; {args.n} images "
          f"3x32x32, batch {args.batch}; one epoch per method")
    print(f"{'method':15s} {'CPU s':>7s} {'wall s':>7s} {'x standard':>11s}  notes")
    for name in names:
        print(f"{name:15s} {secs[name]:7.2f} {wall[name]:7.2f} {secs[name] / base:10.2f}x  "
              f"{notes[name]}")
    checks = []
    if "sat" in secs:
        r = secs["sat"] / base
        checks.append(f"sat / standard = {r:.2f} (target <= 1.10: "
                      f"{'ok' if r <= 1.10 else 'MISSED'})")
    if "pgd_sat" in secs and "pgd_at" in secs:
        r = secs["pgd_sat"] / secs["pgd_at"]
        checks.append(f"pgd_sat / pgd_at = {r:.2f} (target <= 0.60: "
                      f"{'ok' if r <= 0.60 else 'MISSED'}; {notes['pgd_sat']})")
        # the realised coin share varies with the seed: the cost at exactly p = 0.5 from
        # the measured branch costs (SAT branch = sat, PGD branch = pgd_at)
        if "sat" in secs:
            e = 0.5 * secs["sat"] / secs["pgd_at"] + 0.5
            checks.append(f"pgd_sat / pgd_at expected at p = 0.5 from the branch costs: "
                          f"{e:.2f} (target <= 0.60: {'ok' if e <= 0.60 else 'MISSED'})")
    for c in checks:
        print(c)


if __name__ == "__main__":
    main()

"""How many AAI steps the interpretation attack needs: Kendall's tau by step count.

The reference (paper 004's ``aai_topk``) runs 200 signed steps of 0.01 in an l-inf ball
of at most 8/255 (0.031), which its iterate crosses in four steps; it returns the last
iterate, not the best one. This script measures, on trained checkpoints and real test
images, the mean tau (and the share of examples whose prediction flipped, which tau
excludes) at several step counts side by side, with the same random start, so that a
preset with fewer steps states what it gives up in numbers, not by assumption.

    .venv/bin/python benchmarks/aai_steps.py MODEL_DIR [MODEL_DIR ...]
        [--n 256] [--eps 8/255] [--steps 25,50,100,200] [--threads 1]

MODEL_DIR holds ``model.pt`` and its sidecar (``data/<sweep>/runs/...``); the images
are the first ``--n`` of CIFAR-10's test split under ``../shared/data``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch


def cifar_test(n: int, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of the test split, as ``salpipe evaluate`` reads them."""
    from pipeline.data import DATASETS

    block = next(DATASETS.get("cifar10")(root=str(root)).iter_blocks("test", n))
    return torch.from_numpy(block.images).float() / 255, torch.from_numpy(block.labels)


def main() -> None:
    from pipeline.attacks import ATTACKS
    from pipeline.core.budget import parse_budget
    from pipeline.stages.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--eps", default="8/255")
    ap.add_argument("--steps", default="25,50,100,200")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path,
                    default=Path("../shared/data/cifar10/cifar-10-batches-py"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, y = cifar_test(a.n, a.data)
    eps = parse_budget(a.eps)
    steps = [int(s) for s in a.steps.split(",")]
    print(f"AAI at eps {a.eps}, step 0.01, {a.n} CIFAR-10 test images; same random start")
    print(f"{'model':44s} {'steps':>5s} {'mean tau':>9s} {'flipped':>8s} {'s':>7s}")
    for path in a.models:
        model, _ = load_model(path)
        taus = {}
        for k in steps:
            attack = ATTACKS.get("aai")(eps=eps, steps=k, step_size=0.01, random_start=True)
            t0 = time.perf_counter()
            x_adv = attack(model, x, y, index=torch.arange(a.n))
            tau = attack.example_metrics(model, x, x_adv, y)["kendall_tau"]
            s = time.perf_counter() - t0
            kept = tau[~tau.isnan()]
            taus[k] = kept.mean().item() if len(kept) else math.nan
            print(f"{str(path)[-44:]:44s} {k:5d} {taus[k]:9.4f} "
                  f"{1 - len(kept) / a.n:8.3f} {s:7.1f}")
        ref = max(steps)
        for k in steps[:-1]:
            print(f"{'':44s} tau({k}) - tau({ref}) = {taus[k] - taus[ref]:+.4f}")


if __name__ == "__main__":
    main()

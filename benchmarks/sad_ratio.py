"""What SAD's saliency step costs in clean accuracy before any BN recalibration.

Paper 001's Table 5 (saliency added, BN statistics kept) has a ResNet-18 at 94.66 %
clean keep 87.84 % at ratio 0.7 and 81.12 % at 1.0. This script measures the same
ablation on a trained checkpoint and real test images, at several ratios and map
normalisations side by side, through salpipe's own SAD wrapper (``bn_update`` off,
so the network is the checkpoint's): it says how far ``x + ratio * normalise(S(x))``
moves the pixels (mean and median per-image max |change| after the [0, 1] clip) and
what the undefended network then gets right.

    .venv/bin/python benchmarks/sad_ratio.py MODEL_DIR [--n 200]
        [--ratios 0,0.1,0.3,0.5,0.8] [--normalise maxabs,raw] [--threads 1]

MODEL_DIR holds ``model.pt`` and its sidecar; the images are the first ``--n`` of
CIFAR-10's test split under ``../shared/data``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    from pipeline.config.sad import SadConfig
    from pipeline.data import DATASETS
    from pipeline.sad.model import SADModel
    from pipeline.stages.loading import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--ratios", default="0,0.1,0.3,0.5,0.8")
    ap.add_argument("--normalise", default="maxabs,raw")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path,
                    default=Path("../shared/data/cifar10/cifar-10-batches-py"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    block = next(DATASETS.get("cifar10")(root=str(a.data)).iter_blocks("test", a.n))
    x, y = torch.from_numpy(block.images).float() / 255, torch.from_numpy(block.labels)
    network, _ = load_model(a.model, wrap=False)
    print(f"{a.model}: {a.n} CIFAR-10 test images; saliency 'grad' of the predicted class, "
          "BN statistics kept (paper 001 Table 5's ablation)")
    print(f"{'normalise':9s} {'ratio':>5s} {'clean %':>8s} {'mean max|dx|':>13s} "
          f"{'median max|dx|':>15s}")
    for how in a.normalise.split(","):
        for r in (float(v) for v in a.ratios.split(",")):
            model = SADModel(network, SadConfig(ratio=r, normalise=how, bn_update=False))
            with torch.no_grad():
                xs = model.purify(x)
                acc = (network(xs).argmax(1) == y).float().mean().item() * 100
            move = (xs - x).flatten(1).abs().max(1).values
            print(f"{how:9s} {r:5.2f} {acc:8.1f} {move.mean().item():13.3f} "
                  f"{move.median().item():15.3f}")


if __name__ == "__main__":
    main()

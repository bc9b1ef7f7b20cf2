"""Measure how learnable ``shapes`` is (a script, not a test: it trains for a minute).

A narrow ResNet-10 (width 16) trained with the `tiny` teacher recipe
(config/train/tiny_teacher.yaml: batch 128, SGD nesterov lr 0.1 one-cycle with 25 % warm-up,
weight decay 5e-4, 2 px pad-crop + flip) on the default 2000/500 split, one CPU thread;
env BATCH overrides the batch size. Prints per-epoch train/test accuracy and seconds::

    [BATCH=64] .venv/bin/python tests/data/learnability_shapes.py [epochs] [seed] \
        [shapes_param=value ...]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch

from pipeline.data import DATASETS
from pipeline.models import build_model


def main(epochs: int = 6, seed: int = 0, **overrides) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = DATASETS.get("shapes")(seed=seed, **overrides)
    tr, te = cfg.generate("train", 0, cfg.n_train), cfg.generate("test", 0, cfg.n_test)
    x, y = torch.tensor(tr.images).float() / 255, torch.tensor(tr.labels)
    xt, yt = torch.tensor(te.images).float() / 255, torch.tensor(te.labels)
    mean, std = x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()
    model = build_model("resnet10", 10, width=16, mean=mean, std=std)
    bs = int(os.environ.get("BATCH", 128))  # BATCH=32: four times the SGD steps
    steps = epochs * ((len(x) + bs - 1) // bs)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps, pct_start=0.25)
    for epoch in range(epochs):
        t, correct = time.perf_counter(), 0
        model.train()
        for idx in torch.randperm(len(x)).split(bs):
            xb, yb = x[idx], y[idx]
            pad = torch.nn.functional.pad(xb, (2, 2, 2, 2))
            dx, dy = torch.randint(0, 5, (2,)).tolist()  # one shift per batch: cheap
            xb = pad[:, :, dy : dy + xb.shape[2], dx : dx + xb.shape[3]]
            flip = torch.rand(len(xb)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            logits = model(xb)
            loss = torch.nn.functional.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == yb).sum())
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(b).argmax(1) for b in xt.split(250)])
        test_acc = float((pred == yt).float().mean())
        print(f"epoch {epoch + 1}: train acc {correct / len(x):.3f}  test acc {test_acc:.3f}"
              f"  {time.perf_counter() - t:.1f} s", flush=True)
    conf = np.zeros((10, 10), int)
    np.add.at(conf, (yt.numpy(), pred.numpy()), 1)
    print("per-class test acc:", dict(zip(cfg.classes(), (conf.diagonal() / conf.sum(1))
                                          .round(2).tolist())))


if __name__ == "__main__":
    import yaml

    args = [a for a in sys.argv[1:] if "=" not in a]
    kw = {a.split("=")[0]: yaml.safe_load(a.split("=")[1]) for a in sys.argv[1:] if "=" in a}
    main(*(int(a) for a in args), **kw)

"""Saliency throughput: our batched methods vs a plain forward+backward and vs the
per-image loops of the public SAT code, measured side by side in one run.

    .venv/bin/python benchmarks/precompute.py [--threads 1] [--batch 256] [--device cpu]

Teacher: ``resnet10`` width 16 (the CPU sweep's narrow teacher), 10 classes, random
weights (throughput does not depend on training), on a batch of CIFAR-10 images from
``../shared/data/cifar10`` (random images when absent). For every method it prints
images/s and two ratios:

* ``vs fwd+bwd``: its images/s over that of one plain training-style forward+backward
  (cross-entropy, ``.backward()`` to the weights) of the teacher on the same batch;
  for ``ig`` and ``smoothgrad`` also over ``fwd+bwd / steps`` (their ideal cost);
* ``vs per-image``: over the images/s of a per-image loop through the libraries the
  SAT code's approach corresponds to (Captum ``Saliency`` / ``GuidedBackprop`` /
  ``IntegratedGradients`` / ``NoiseTunnel``, pytorch-grad-cam ``GradCAM`` /
  ``GradCAMPlusPlus``; for ``cam`` our own CAM one image at a time, as PART's torchcam
  loop). The per-image loops run on ``--loop-images`` images.

Targets (issue 3): grad, gbp, gradcampp, cam >= 0.8x fwd+bwd and >= 10x per-image.
Our methods take the whole batch and split it into device-sized pieces themselves
(:func:`pipeline.saliency.base.auto_batch`: 64 images on CPU); the plain fwd+bwd runs on
the whole batch as one training step would.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch_1"
IG_STEPS = 20
SG_SAMPLES = 10
TARGETS = ("grad", "gbp", "gradcampp", "cam")


def load_images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` CIFAR-10 test images in [0, 1] with labels, or random ones."""
    if CIFAR.is_file():
        with open(CIFAR, "rb") as f:  # the project's own shared data, CIFAR's pickle layout
            d = pickle.load(f, encoding="bytes")
        x = torch.tensor(d[b"data"][:n]).view(-1, 3, 32, 32).float() / 255
        return x, torch.tensor(d[b"labels"][:n]), "CIFAR-10 test images"
    return torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,)), "random images"


def seconds(fn: Callable[[], object], device) -> float:
    """Wall time of one call of ``fn`` (CUDA synchronised)."""
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], object]], sizes: dict[str, int], rounds: int,
                device) -> dict[str, list[float]]:
    """Images/s of each ``fn`` per round, the fns run in turn within every round.

    Running them side by side round after round (after one warm-up call each) makes
    their ratios robust to load that changes during the run (a shared machine).
    """
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(sizes[k] / seconds(fn, device))
    return out


def per_image_loops(model, device) -> dict[str, Callable[[torch.Tensor, torch.Tensor], None]]:
    """One image at a time through the libraries (the SAT code's pattern)."""
    from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pipeline.saliency.cam import class_activation_map

    def loop(one: Callable[[torch.Tensor, int], object]):
        def run(x, y):
            for i in range(x.shape[0]):
                one(x[i:i + 1].clone(), int(y[i]))
        return run

    def gradcam_lib(cls):
        def one(xi, yi):
            with cls(model=model, target_layers=[model.cam_layer]) as cam:
                cam(input_tensor=xi, targets=[ClassifierOutputTarget(yi)])
        return one

    def smooth(xi, yi):
        sd = 0.15 * float(xi.max() - xi.min())
        NoiseTunnel(Saliency(model)).attribute(xi, nt_type="smoothgrad", nt_samples=SG_SAMPLES,
                                               stdevs=sd, target=yi, abs=False)

    def cam_one(xi, yi):
        with torch.no_grad():
            class_activation_map(model, xi, torch.tensor([yi], device=device))

    return {
        "grad": loop(lambda xi, yi: Saliency(model).attribute(xi, target=yi, abs=False)),
        "gbp": loop(lambda xi, yi: GuidedBackprop(model).attribute(xi, target=yi)),
        "gradcam": loop(gradcam_lib(GradCAM)),
        "gradcampp": loop(gradcam_lib(GradCAMPlusPlus)),
        "cam": loop(cam_one),
        "ig": loop(lambda xi, yi: IntegratedGradients(model).attribute(
            xi, target=yi, n_steps=IG_STEPS, internal_batch_size=IG_STEPS)),
        "smoothgrad": loop(smooth),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--loop-images", type=int, default=16, help="images for per-image loops")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from pipeline.models import build_model
    from pipeline.saliency import SALIENCY

    device = torch.device(args.device)
    model = build_model("resnet10", 10, width=16).to(device).eval()
    x, y, what = load_images(args.batch)
    x, y = x.to(device), y.to(device)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    params = {"ig": {"steps": IG_STEPS}, "smoothgrad": {"samples": SG_SAMPLES}}
    cost = {"ig": IG_STEPS, "smoothgrad": SG_SAMPLES}
    loops = per_image_loops(model, device)
    xl, yl = x[: args.loop_images], y[: args.loop_images]

    print(f"teacher resnet10 width 16, {what} 3x32x32, batch {len(x)}, device {device}, "
          f"torch threads {args.threads}; per-image loops on {len(xl)} images; medians "
          f"over {args.repeats} interleaved rounds (ratios taken within each round)")
    header = (f"{'method':18s} {'img/s':>9s} {'fwd+bwd':>9s} {'vs fwd+bwd':>10s} "
              f"{'vs fwd+bwd/steps':>16s} {'loop img/s':>10s} {'vs per-image':>12s}  target")
    print(header)
    print("-" * len(header))
    med = statistics.median
    for name in SALIENCY.names():
        method = SALIENCY.get(name)(**params.get(name, {}))
        fns = {"plain": fwd_bwd, "method": lambda m=method: m.attribute(model, x, y)}
        sizes = {"plain": len(x), "method": len(x), "loop": len(xl)}
        if name in loops:
            fns["loop"] = lambda f=loops[name]: f(xl, yl)
        r = interleaved(fns, sizes, args.repeats, device)
        model.zero_grad(set_to_none=True)
        vs_plain = med(m / p for m, p in zip(r["method"], r["plain"]))
        steps = f"{vs_plain * cost[name]:16.2f}" if name in cost else f"{'':16s}"
        if name in loops:
            vs_loop = med(m / lp for m, lp in zip(r["method"], r["loop"]))
            loop_cols = f"{med(r['loop']):10.1f} {vs_loop:12.1f}"
        else:
            loop_cols = f"{'-':>10s} {'-':>12s}"
        ok = ""
        if name in TARGETS:
            ok = "ok" if vs_plain >= 0.8 and vs_loop >= 10 else "MISSED"
        print(f"{name:18s} {med(r['method']):9.1f} {med(r['plain']):9.1f} {vs_plain:10.2f} "
              f"{steps} {loop_cols}  {ok}", flush=True)
    print(f"(ig: {IG_STEPS} steps; smoothgrad: {SG_SAMPLES} samples of grad; "
          "vs fwd+bwd/steps = 1.0 means the ideal steps x fwd+bwd cost)")


if __name__ == "__main__":
    main()

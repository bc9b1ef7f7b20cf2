"""Cost of batch-size-independent randomness in the evaluation protocol.

Runs PGD-5 with a random start on a narrow ResNet-10 twice, side by side: with
per-example random streams (``index`` given, what ``salpipe evaluate`` does) and with
the global RNG, and prints the time ratio. Usage: ``python benchmarks/evaluate.py [N]``.
"""

from __future__ import annotations

import sys
import time

import torch


def main(n: int = 256, repeats: int = 3) -> None:
    from pipeline.attacks import ATTACKS
    from pipeline.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("resnet10", 10, width=16).eval()
    x, y = torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))
    pgd = ATTACKS.get("pgd")(eps=4 / 255, steps=5)
    times = {"streams": [], "global": []}
    for _ in range(repeats):
        for name, kw in (("streams", {"index": torch.arange(n)}), ("global", {})):
            t0 = time.perf_counter()
            pgd(model, x, y, **kw)
            times[name].append(time.perf_counter() - t0)
    s, g = min(times["streams"]), min(times["global"])
    print(f"PGD-5, {n} images: per-example streams {s:.2f} s, global RNG {g:.2f} s, "
          f"ratio {s / g:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)

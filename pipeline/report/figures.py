"""Report figures (matplotlib, Agg): robustness curves and per-epoch training cost."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline.report.tables import add_labels, latest_rows, matching_clean, seed_stats

# Method families, one panel each (at most MAX_LINES lines; a larger family is split).
FAMILIES = {
    "standard": "baselines", "uniform_noise": "baselines",
    "sat": "SAT",
    "pgd_at": "PGD-AT family", "pgd_at_uniform": "PGD-AT family", "pgd_sat": "PGD-AT family",
    "sip_at": "PGD-AT family", "fat": "PGD-AT family", "part": "PGD-AT family",
    "trades": "TRADES family", "trades_uniform": "TRADES family",
    "trades_sat": "TRADES family",
    "int": "Int family", "int2": "Int family", "int_adv": "Int family",
    "int2_adv": "Int family", "int_one_class": "Int family",
}
MAX_LINES = 6


def family_panels(rows: dict[str, str]) -> list[tuple[str, list[str]]]:
    """``(panel title, row labels)``: rows (label -> method) grouped by family
    (:data:`FAMILIES`; a SAD variant or an unknown method is a family of its own
    kind), at most :data:`MAX_LINES` per panel, in a fixed order."""
    by: dict[str, list[str]] = {}
    for label, method in sorted(rows.items()):
        fam = FAMILIES.get(method) or ("SAD" if "sad" in str(method) else str(method))
        by.setdefault(fam, []).append(label)
    order = list(dict.fromkeys(FAMILIES.values()))
    panels = []
    for fam in sorted(by, key=lambda f: (order.index(f) if f in order else len(order), f)):
        labels = by[fam]
        parts = [labels[i:i + MAX_LINES] for i in range(0, len(labels), MAX_LINES)]
        for k, part in enumerate(parts):
            panels.append((fam + (f" ({k + 1}/{len(parts)})" if len(parts) > 1 else ""),
                           part))
    return panels


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    mean, _, lo, hi, _ = seed_stats(values)
    return mean, lo, hi


def robustness_curves(results: pd.DataFrame, out: Path) -> list[Path]:
    """One PNG per (dataset, arch, attack run at several budgets): accuracy vs eps, a
    panel per method family (at most six lines), each line the mean over seeds with
    its 95 % interval shaded (where there are two seeds or more).

    Clean accuracy is drawn at eps = 0. The worst case is left out: it combines
    different attacks at different budgets (see its table). Returns the files.
    """
    every = results[results["metric"] == "accuracy"].copy()
    acc = latest_rows(add_labels(every))
    written = []
    for (ds, arch), g in acc.groupby(["dataset", "arch"], dropna=False):
        attacks = [a for a, ga in g.groupby("attack", sort=False)
                   if a not in ("clean", "worst_case") and ga["eps"].nunique() > 1]
        for attack in attacks:
            ga = g[g["attack"] == attack]
            methods = dict(zip(ga["row"], ga["method"]))
            panels = family_panels(methods)
            ncols = min(3, len(panels))
            nrows = -(-len(panels) // ncols)
            fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.7 * nrows),
                                     squeeze=False)
            for ax in axes.flat[len(panels):]:
                ax.set_visible(False)
            cmap = plt.get_cmap("tab10")
            for ax, (title, labels) in zip(axes.flat, panels):
                for i, row in enumerate(labels):
                    rows = ga[ga["row"] == row]
                    clean = matching_clean(every, rows)
                    per_eps = [(0.0, clean.groupby("seed", dropna=False)["value"].mean())]
                    per_eps += [(e, r.groupby("seed", dropna=False)["value"].mean())
                                for e, r in rows.groupby("eps")]
                    pts = [(e * 255, *_interval(v.to_numpy() * 100))
                           for e, v in per_eps if len(v)]
                    if not pts:
                        continue
                    x, mean, lo, hi = map(np.array, zip(*pts))
                    color = cmap(i % 10)
                    ax.plot(x, mean, marker="o", ms=3, color=color, label=row)
                    if np.isfinite(lo).all():
                        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)
                ax.set(title=title, xlabel="eps (x/255)", ylabel="accuracy (%)",
                       ylim=(0, 102))
                ax.grid(alpha=0.3)
                ax.legend(fontsize=6.5, frameon=False, loc="upper right")
            n_seeds = int(ga.groupby("row")["seed"].nunique().max())
            fig.suptitle(f"{ds} / {arch}: {attack} (mean over {n_seeds} seed(s); "
                         "shaded: 95 % interval over seeds)", fontsize=10)
            fig.tight_layout()
            path = out / f"curves_{ds}_{arch}_{attack}.png".replace("/", "_")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def training_cost(per_row: pd.DataFrame, out: Path) -> Path | None:
    """Bar chart of mean seconds per epoch per cost row, error bars the sd over runs
    (``per_row``: pipeline.report.render.cost_per_row's table)."""
    if per_row.empty:
        return None
    g = per_row.sort_values("s / epoch")
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(g) + 2), 3.2))
    ax.bar(g.index, g["s / epoch"], yerr=g["sd over runs"].fillna(0), capsize=3,
           color="tab:blue")
    ax.set(ylabel="seconds per epoch", title="training cost per epoch")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path = out / "training_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

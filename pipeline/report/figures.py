"""Report figures (matplotlib, Agg): robustness curves and per-epoch training cost."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pipeline.report.tables import add_labels, latest_rows, matching_clean


def robustness_curves(results: pd.DataFrame, out: Path) -> list[Path]:
    """One PNG per (dataset, arch): accuracy vs eps per method, a panel per attack.

    Clean accuracy is drawn at eps = 0 of every panel. The worst case is left out: it
    combines different attacks at different budgets (see its table). Returns the files.
    """
    every = results[results["metric"] == "accuracy"].copy()
    acc = latest_rows(add_labels(every))
    written = []
    for (ds, arch), g in acc.groupby(["dataset", "arch"], dropna=False):
        attacks = [a for a, ga in g.groupby("attack", sort=False)
                   if a not in ("clean", "worst_case") and ga["eps"].nunique() > 1]
        if not attacks:
            continue
        ncols = min(4, len(attacks))
        nrows = -(-len(attacks) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols + 3.5, 3.6 * nrows + 0.4),
                                 squeeze=False)
        # tab20 colours x three line styles: up to 60 methods stay distinguishable
        cmap = plt.get_cmap("tab20")
        styles = {row: (cmap(i % 20), ("-", "--", ":")[i // 20 % 3])
                  for i, row in enumerate(sorted(g["row"].unique()))}
        for ax in axes.flat[len(attacks):]:
            ax.set_visible(False)
        for ax, attack in zip(axes.flat, attacks):
            for row, gr in g.groupby("row"):
                rows = gr[gr["attack"] == attack]
                clean = matching_clean(every, rows)["value"].mean()  # same evaluation
                ga = rows.groupby("eps")["value"].agg(["mean", "std"])
                if ga.empty:
                    continue
                eps = np.r_[0.0, ga.index.to_numpy()] * 255
                mean = np.r_[clean, ga["mean"].to_numpy()] * 100
                std = np.r_[0.0, ga["std"].fillna(0).to_numpy()] * 100
                color, style = styles[row]
                ax.errorbar(eps, mean, yerr=std, marker="o", ms=3, capsize=2, label=row,
                            color=color, linestyle=style)
            ax.set(title=attack, xlabel="eps (x/255)", ylabel="accuracy (%)", ylim=(0, 102))
            ax.grid(alpha=0.3)
        # one legend beside the panels, never over the curves
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
        fig.suptitle(f"{ds} / {arch}")
        fig.tight_layout(rect=(0, 0, 1 - 3.3 / fig.get_figwidth(), 1))
        path = out / f"curves_{ds}_{arch}.png".replace("/", "_")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def training_cost(cost: pd.DataFrame, out: Path) -> Path | None:
    """Bar chart of mean seconds per epoch per method (``cost``: method, epoch_seconds)."""
    if cost.empty:
        return None
    g = cost.groupby("method")["epoch_seconds"].agg(["mean", "std"]).sort_values("mean")
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(g) + 2), 3.2))
    ax.bar(g.index, g["mean"], yerr=g["std"].fillna(0), capsize=3, color="tab:blue")
    ax.set(ylabel="seconds per epoch", title="training cost per epoch")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path = out / "training_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

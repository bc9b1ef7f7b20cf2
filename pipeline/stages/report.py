"""``salpipe report``: results tables (+ runs, galleries) -> the report folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.report.render import render_report
from pipeline.stages.check_sweep import read_comparison
from pipeline.stages.show_saliency import run_show_saliency


def draw_galleries(store: str | Path, sources: list[str], out: Path, *, split: str = "test",
                   n: int = 8) -> list[Path]:
    """One PNG per saliency source of ``store`` (``salpipe show-saliency``'s drawing)."""
    paths = []
    for source in sources:
        path = out / f"gallery_{source.replace('.', '_')}.png"
        run_show_saliency(str(store), source, path, split=split, n=n)
        paths.append(path)
    return paths


def run_report(results: list[Path], out_dir: Path, runs: list[Path] | None = None,
               galleries: list[Path] | None = None, gallery_store: str | Path | None = None,
               gallery_sources: list[str] | None = None, gallery_split: str = "test",
               gallery_n: int = 8, comparisons: str | Path | None = None,
               benchmarks: str | Path | None = None) -> dict:
    """Build the report from one or more results tables.

    Args:
        results: Parquet tables written by ``salpipe evaluate``.
        out_dir: output folder (replaced atomically): ``report.md``, ``report.html``, PNGs
            and ``report.json`` (the marker: command, inputs, files written). It must be
            missing, empty or an earlier report: a folder holding anything else is
            refused (FileExistsError naming it and its content) before anything is
            written. A missing, empty or non-Parquet results table is an error naming it.
        runs: training run directories whose ``metrics.jsonl`` give the per-epoch cost.
        galleries: saliency gallery PNGs (made elsewhere) to include as they are.
        gallery_store, gallery_sources: draw a gallery of the first ``gallery_n`` images
            of ``gallery_split`` for each cached saliency source named.
        comparisons: the sweep's ``comparisons.json`` (``salpipe check-sweep --out``):
            training settings per student and the declared deviations, shown beside
            the rows they touch.
        benchmarks: a folder of Snakemake benchmark files ``<rule>/<job>.tsv``: a cost
            table per rule (missing or empty: none; a malformed file: an error naming it).

    Returns:
        ``{"out", "tables", "figures", "flags"}``.
    """
    def draw(folder: Path) -> list[Path]:
        return draw_galleries(gallery_store, list(gallery_sources or []), folder,
                              split=gallery_split, n=gallery_n)

    inputs = ({"gallery_store": str(gallery_store),
               "gallery_sources": list(gallery_sources or []),
               "gallery_split": gallery_split, "gallery_n": gallery_n}
              if gallery_store else {})
    comp = read_comparison(comparisons) if comparisons is not None else None
    if comparisons is not None:
        inputs["comparisons"] = str(comparisons)
    return render_report(results, out_dir, runs, galleries,
                         draw if gallery_store else None, inputs=inputs, comparisons=comp,
                         benchmarks=benchmarks)

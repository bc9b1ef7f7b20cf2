"""The report: paper-style tables with published numbers beside ours, curves, costs, flags.

It reads result tables (and training runs' ``metrics.jsonl``, Snakemake's benchmark
files) only; the stage that also draws saliency galleries is :mod:`pipeline.stages.report`.
The pages are jinja2 templates in ``templates/`` (:mod:`pipeline.report.pages`).
"""

from pipeline.report.render import read_training_cost, render_report

__all__ = ["read_training_cost", "render_report"]

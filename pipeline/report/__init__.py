"""The report: paper-style tables with published numbers beside ours, curves, costs, flags."""

from pipeline.report.stage import read_training_cost, run_report

__all__ = ["read_training_cost", "run_report"]

"""Robust evaluation: the protocol, presets, the results table and saliency metrics."""

from pipeline.evaluate.presets import AttackRun, load_presets
from pipeline.evaluate.robust import evaluate_robust, sanity_checks
from pipeline.evaluate.stage import evaluate_to_table, read_results, run_evaluate

__all__ = [
    "AttackRun", "evaluate_robust", "evaluate_to_table", "load_presets", "read_results",
    "run_evaluate", "sanity_checks",
]

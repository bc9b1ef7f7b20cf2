"""Robust evaluation: the protocol, presets, the views of a defence, the results table and
saliency metrics. The stage that loads a checkpoint is :mod:`pipeline.stages.evaluate`."""

from pipeline.evaluate.presets import AttackRun, load_presets
from pipeline.evaluate.robust import evaluate_robust, sanity_checks
from pipeline.evaluate.table import evaluate_to_table, read_results

__all__ = [
    "AttackRun", "evaluate_robust", "evaluate_to_table", "load_presets", "read_results",
    "sanity_checks",
]

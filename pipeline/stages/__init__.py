"""The top layer: one module per stage, the only place that combines sub-packages.

Each stage is a function of explicit inputs and output paths (``run_<stage>``), called by
the thin ``cli.py`` and, through it, by the Snakefile. Nothing below imports this package.
"""

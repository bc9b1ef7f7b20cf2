"""salpipe: saliency-guided adversarial robustness, as a two-stage pipeline with a saliency cache."""

__version__ = "0.1.0"

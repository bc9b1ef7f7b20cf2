"""Model registry: factories ``(num_classes, **kw) -> nn.Module`` returning logits.

Every model normalises its input itself (pixels in [0, 1] go in), uses its own
``nn.ReLU`` module for every ReLU (so guided backprop can hook them), and exposes
``features(x)`` (the last conv feature map, after its ReLU) and ``fc`` (the single
linear layer after global average pooling), so CAM is defined for all of them.
"""

from pipeline.core.registry import Registry

MODELS = Registry("model")

from pipeline.models import resnet, small_cnn, wide_resnet  # noqa: F401  (registers)
from pipeline.models.base import ImageClassifier, build_model

__all__ = ["MODELS", "ImageClassifier", "build_model"]

"""A small CNN for smoke tests and the smallest sweeps (conv-BN-ReLU x4, GAP, linear)."""

from __future__ import annotations

from torch import nn

from pipeline.models import MODELS
from pipeline.models.base import ImageClassifier, Normalize


class SmallCNN(ImageClassifier):
    def __init__(self, num_classes: int, *, width: int = 16,
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        chans = [len(mean), width, width, 2 * width, 2 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 2 if i in (1, 3) else 1
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride, 1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(chans[-1], num_classes)


@MODELS.register("small_cnn")
def small_cnn(num_classes: int, **kw) -> SmallCNN:
    return SmallCNN(num_classes, **kw)

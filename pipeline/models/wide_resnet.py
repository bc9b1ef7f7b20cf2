"""WideResNet-34-10 (Zagoruyko & Komodakis 2016), the usual PGD-AT / TRADES backbone."""

from __future__ import annotations

from torch import nn

from pipeline.models import MODELS
from pipeline.models.base import ImageClassifier, Normalize


class WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv-BN-ReLU-conv plus shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.equal = in_planes == planes and stride == 1
        self.shortcut = (
            None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, bias=False)
        )

    def forward(self, x):
        o = self.relu1(self.bn1(x))
        y = self.conv2(self.relu2(self.bn2(self.conv1(o))))
        return y + (x if self.equal else self.shortcut(o))


class WideResNet(ImageClassifier):
    def __init__(self, num_classes: int, *, depth: int = 34, width: int = 10,
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = [nn.Conv2d(len(mean), widths[0], 3, 1, 1, bias=False)]
        in_planes = widths[0]
        for stage in range(3):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(WideBlock(in_planes, widths[stage + 1], stride))
                in_planes = widths[stage + 1]
        layers += [nn.BatchNorm2d(in_planes), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)


@MODELS.register("wrn34_10")
def wrn34_10(num_classes: int, **kw) -> WideResNet:
    """WideResNet-34-10; ``width`` is the widening factor (10)."""
    return WideResNet(num_classes, depth=34, **kw)

"""CIFAR-style ResNets (He et al. 2016): 3x3 stem, no max-pool, GAP, one linear layer.

``width`` is the first stage's channel count (64 in the papers); stages double it,
so ``width=16`` gives the narrow 16-32-64-128 ResNet-10 of the CPU sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pipeline.models import MODELS
from pipeline.models.base import ImageClassifier, Normalize


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)
        self.relu2 = nn.ReLU()  # its own module: guided backprop must see every ReLU

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class ResNet(ImageClassifier):
    """CIFAR ResNet with configurable depth (blocks per stage) and base width."""

    def __init__(
        self,
        block: type,
        num_blocks: Sequence[int],
        num_classes: int,
        *,
        width: int = 64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    ):
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = [
            nn.Conv2d(len(mean), width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        in_planes = width
        for stage, n in enumerate(num_blocks):
            planes = width * 2**stage
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)


def _resnet(block, blocks):
    def factory(num_classes: int, **kw) -> ResNet:
        return ResNet(block, blocks, num_classes, **kw)

    return factory


MODELS.register("resnet10")(_resnet(BasicBlock, (1, 1, 1, 1)))
MODELS.register("resnet18")(_resnet(BasicBlock, (2, 2, 2, 2)))
MODELS.register("resnet34")(_resnet(BasicBlock, (3, 4, 6, 3)))
MODELS.register("resnet50")(_resnet(Bottleneck, (3, 4, 6, 3)))

"""CIFAR-style ResNets: 3x3 stride-1 stem, no max-pool, global average pooling.

- ResNet-32 (LDAM-DRW / MiSLAS): 3 stages x 5 BasicBlocks, widths 16/32/64, parameter-free
  (zero-padding) shortcuts, 64-d features.
- ResNet-34 (the LOS paper's code): BasicBlocks [3, 4, 6, 3], widths 64/128/256/512,
  1x1-conv shortcuts, 512-d features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lttools.models.normalized import NormalizedBackbone


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.extra = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, pad_shortcut: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        elif pad_shortcut:
            self.shortcut = PadShortcut(in_ch, out_ch)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(NormalizedBackbone):
    """`features(x)` gives the penultimate (pooled) features; `fc` is the linear head."""

    def __init__(self, blocks: list[int], widths: list[int], num_classes: int, in_channels: int,
                 pad_shortcut: bool):
        super().__init__(in_channels)
        self.blocks = list(blocks)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, in_ch = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_ch, w, stride, pad_shortcut))
                in_ch = w
        self.layers = nn.Sequential(*layers)
        self.feature_dim = in_ch
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def resnet32(num_classes: int, in_channels: int = 3) -> CifarResNet:
    return CifarResNet([5, 5, 5], [16, 32, 64], num_classes, in_channels, pad_shortcut=True)


def resnet34(num_classes: int, in_channels: int = 3) -> CifarResNet:
    return CifarResNet([3, 4, 6, 3], [64, 128, 256, 512], num_classes, in_channels,
                       pad_shortcut=False)

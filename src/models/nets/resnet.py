"""CIFAR-style residual networks (3x3 stem, no initial max-pool), for 32x32 and smaller inputs.

Constructors follow torchvision/timm: ``resnet18(...)`` builds the ResNet-18 layout of He et al.
2016 at CIFAR scale; ``resnet9(...)`` is the fast DAWNBench ResNet-9 (Page, 2018).
"""

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution -> BatchNorm -> ReLU, the unit every block here is made of."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, stride)
        self.conv2 = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, then one stage of ``BasicBlock`` per entry of ``blocks``; width doubles and
    resolution halves from stage to stage."""

    def __init__(
        self, in_channels: int, num_classes: int, blocks: Sequence[int], width: int = 64
    ) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, width)
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(c_in if j == 0 else c_out, c_out, stride if j == 0 else 1) for j in range(n)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


class Residual(nn.Module):
    """``x + f(x)``: the shortcut used by ResNet-9, where ``f`` keeps the shape."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class ResNet9(nn.Module):
    """DAWNBench ResNet-9: conv-pool stages with two residual pairs; trains CIFAR-10 to 94 % in
    minutes on one GPU. ``width`` scales every layer (64 is the original)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            conv_bn(in_channels, w),
            conv_bn(w, 2 * w), nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn(2 * w, 2 * w), conv_bn(2 * w, 2 * w))),
            conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            conv_bn(4 * w, 8 * w), nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn(8 * w, 8 * w), conv_bn(8 * w, 8 * w))),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
            nn.Linear(8 * w, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet9(in_channels: int, num_classes: int, width: int = 64) -> ResNet9:
    return ResNet9(in_channels, num_classes, width)


def resnet18(in_channels: int, num_classes: int, width: int = 64) -> ResNet:
    return ResNet(in_channels, num_classes, blocks=(2, 2, 2, 2), width=width)

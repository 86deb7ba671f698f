"""A small convolutional classifier: conv/pool blocks followed by a fully connected head."""

from collections.abc import Sequence

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """Stacks ``[conv3x3 -> BN -> ReLU] x 2 -> maxpool`` blocks, then ``FC -> ReLU -> dropout -> FC``.

    Two convolutions per stage (as in VGG) buy a 5x5 receptive field per stage for fewer
    parameters than one 5x5 convolution; BatchNorm lets it train with a high learning rate.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in, size = c_out, size // 2
        if size < 1:
            raise ValueError(
                f"image_size={image_size} is too small for {len(channels)} pooling stages; "
                "use fewer channels entries"
            )
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

"""A small convolutional classifier: conv/pool blocks followed by a fully connected head."""

from collections.abc import Sequence

import torch
from torch import nn


class ConvFeatures(nn.Sequential):
    """Stages of ``[conv3x3 -> BN -> ReLU] x convs_per_stage -> maxpool``: an image encoder that
    returns the feature map ``(B, channels[-1], H / 2**stages, W / 2**stages)``.

    One conv per stage is the classic conv/pool layout; two (as in VGG) widen the receptive field
    for about 3x the compute. BatchNorm lets either train with a high learning rate.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = (32, 64), convs_per_stage: int = 1) -> None:
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in channels:
            for i in range(convs_per_stage):
                layers += [
                    nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
            layers.append(nn.MaxPool2d(2))
            c_in = c_out
        super().__init__(*layers)
        self.out_channels, self.downsample = c_in, 2 ** len(channels)


class SimpleCNN(nn.Module):
    """:class:`ConvFeatures`, then ``FC -> ReLU -> dropout -> FC``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
        convs_per_stage: int = 1,
    ) -> None:
        super().__init__()
        self.features = ConvFeatures(in_channels, channels, convs_per_stage)
        size = image_size // self.features.downsample
        if size < 1:
            raise ValueError(
                f"image_size={image_size} is too small for {len(channels)} pooling stages; "
                "use fewer channels entries"
            )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.features.out_channels * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

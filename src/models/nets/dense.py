"""lightning-hydra-template's ``SimpleDenseNet``, kept as the MNIST baseline to compare against."""

from collections.abc import Sequence

import torch
from torch import nn


class SimpleDenseNet(nn.Module):
    """A multilayer perceptron on flattened pixels: ``[Linear -> BN -> ReLU] x n -> Linear``.

    The defaults (64, 128, 64) are lightning-hydra-template's, so ``experiment=mnist_lht_baseline``
    reproduces its recipe.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (64, 128, 64)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

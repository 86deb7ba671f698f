"""lightning-hydra-template's ``SimpleDenseNet``, kept as the MNIST baseline to compare against."""

from collections.abc import Sequence

import torch
from torch import nn


class SimpleDenseNet(nn.Module):
    """A multilayer perceptron on flattened pixels: ``[Linear -> BN -> ReLU -> Dropout] x n -> Linear``.

    The defaults (64, 128, 64, BatchNorm, no dropout) are lightning-hydra-template's, so
    ``experiment=mnist_lht_baseline`` reproduces its recipe; layers that are switched off are left
    out rather than made identities, so its state_dict keys stay the same. ``batch_norm=False``
    with ``dropout``/``input_dropout`` is Hinton et al.'s regularised MLP (experiment=mnist_kd_teacher).
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (64, 128, 64), batch_norm: bool = True,
        dropout: float = 0.0, input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if batch_norm else []), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

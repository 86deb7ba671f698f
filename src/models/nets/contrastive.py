"""An image encoder with SimCLR's projection head (Chen et al. 2020), for contrastive pre-training."""

import torch
from torch import nn

from src.core.output import output_layer


class ContrastiveNet(nn.Module):
    """``encoder`` -> features -> ``projector`` (MLP) -> projections. The contrastive loss acts on
    the projections; the features are what transfers (and what a linear probe reads).

    ``encoder`` is a classifier net (SimpleCNN, ResNet, ...) whose output layer (its last
    ``nn.Linear``: :func:`~src.core.output.output_layer`) is replaced by ``nn.Identity``: the features are that layer's input, and the
    encoder's state_dict keys are the classifier's own, so ``init=checkpoint
    init.prefix_map={encoder:''}`` loads every layer but the output layer back into that classifier.
    """

    def __init__(self, encoder: nn.Module, projection_dim: int = 64, hidden_dim: int | None = None) -> None:
        super().__init__()
        name, head = output_layer(encoder)
        if projection_dim < 1 or (hidden_dim is not None and hidden_dim < 1):
            raise ValueError(f"projection_dim={projection_dim} and hidden_dim={hidden_dim} must be >= 1")
        encoder.set_submodule(name, nn.Identity())
        self.encoder, self.feature_dim = encoder, head.in_features
        hidden = hidden_dim or self.feature_dim
        self.projector = nn.Sequential(nn.Linear(self.feature_dim, hidden), nn.ReLU(inplace=True),
                                       nn.Linear(hidden, projection_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))

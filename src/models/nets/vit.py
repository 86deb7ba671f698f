"""Vision Transformer (Dosovitskiy et al. 2021): the image cut into square patches, each patch a
token, a stack of pre-LN encoder layers (the shared ones of :mod:`attention`), classification from
the mean of the output tokens."""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.attention import EncoderLayer


class VisionTransformer(nn.Module):
    """Patch embedding (a stride-``patch_size`` convolution) + learned positions + encoder layers +
    LayerNorm + linear head. Mean pooling instead of a class token: as accurate on small images
    and one parameter less to tune (Beyer et al. 2022, "Better plain ViT baselines")."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, patch_size: int = 4, dim: int = 128,
                 depth: int = 4, num_heads: int = 4, ff_hidden: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}; pick a patch "
                             "size that divides it (model.net.patch_size)")
        self.patches = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.positions = nn.Parameter(torch.randn(1, (image_size // patch_size) ** 2, dim) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ff_hidden, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2) + self.positions  # (B, patches, dim)
        for layer in self.layers:
            tokens = layer(tokens)
        return self.head(self.norm(tokens).mean(dim=1))

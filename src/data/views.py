"""Random views of a batch of images for self-supervised objectives (SimCLR's two views per image),
made in a few batched tensor ops on the batch's device, each image with its own random parameters.

torchvision's v2 transforms draw one set of parameters per call, so a per-image crop would take a
Python loop over the batch; here every image's crop (and flip) is one row of a batched affine grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from src.core.errors import ConfigError


def _range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """``value`` as a ``(min, max)`` pair inside ``(low, high]``."""
    if len(value) != 2 or not low < value[0] <= value[1] <= high:
        raise ConfigError(f"model.views.{name}={list(value)} must be [min, max] with {low} < min <= max <= {high}")
    return float(value[0]), float(value[1])


class RandomViews(nn.Module):
    """A random resized crop (area ``scale`` of the image, aspect ``ratio``, resized back to the
    input size), a horizontal flip (``flip``), then brightness and contrast jitter, on normalised
    images ``(B, C, H, W)``.

    ``brightness`` shifts each image by up to that many of the dataset's standard deviations (the
    images are normalised); ``contrast`` scales its deviation from its own mean by a factor in
    ``[1 - contrast, 1 + contrast]``. Pass a seeded ``generator`` for views that repeat (a
    validation loss comparable across epochs).
    """

    def __init__(self, scale: Sequence[float] = (0.25, 1.0), ratio: Sequence[float] = (0.75, 4 / 3), flip: bool = True,
                 brightness: float = 0.4, contrast: float = 0.4) -> None:
        super().__init__()
        self.scale = _range("scale", scale, 0.0, 1.0)
        self.log_ratio = tuple(map(math.log, _range("ratio", ratio, 0.0, math.inf)))
        if brightness < 0 or not 0 <= contrast < 1:
            raise ConfigError(f"model.views.brightness={brightness} must be >= 0 and model.views.contrast={contrast} "
                              "in [0, 1)")
        self.flip, self.brightness, self.contrast = flip, brightness, contrast

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = images.shape[0]
        u = torch.rand(n, 7, device=images.device, generator=generator)  # crop (4), flip, contrast, brightness
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        ratio = torch.exp(self.log_ratio[0] + (self.log_ratio[1] - self.log_ratio[0]) * u[:, 1])
        # half-widths of the crop in affine_grid's [-1, 1] coordinates (1: the whole side)
        w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
        cx, cy = (1 - w) * (2 * u[:, 2] - 1), (1 - h) * (2 * u[:, 3] - 1)
        sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if self.flip else torch.ones_like(w)
        zero = torch.zeros_like(w)
        theta = torch.stack([torch.stack([w * sign, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        views = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        jitter = (u[:, 5:] * 2 - 1).to(images.dtype).view(n, 2, 1, 1, 1)
        mean = views.mean(dim=(1, 2, 3), keepdim=True)
        return (views - mean) * (1 + self.contrast * jitter[:, 0]) + mean + self.brightness * jitter[:, 1]

"""Image regression data: each image of an image dataset turned by a seeded random angle, the
angle its target (rotated-digit angle regression: Salakhutdinov & Hinton 2007, Wilson et al. 2016)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from src.core.errors import ConfigError
from src.data.classification import ClassificationDataModule


def rotate(images: torch.Tensor, degrees: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """uint8 images (N, C, H, W) turned counter-clockwise by ``degrees`` (N,) about their centre,
    bilinear, corners filled with 0; in chunks, so a 60k-image split stays a few hundred MB."""
    out = torch.empty_like(images)
    for start in range(0, len(images), chunk):
        x, a = images[start:start + chunk].float(), torch.deg2rad(degrees[start:start + chunk].float())
        cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out[start:start + chunk] = F.grid_sample(x, grid, align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return out


class RegressionDataModule(ClassificationDataModule):
    """Serves ``(image, angle)`` batches: the images of ``dataset`` (see
    :class:`~src.data.images.ImageDataModule`), each turned by an angle drawn uniformly in
    ``[-max_angle, max_angle]`` degrees. The angles are seeded by ``split_seed`` and the split, so
    every run, and every process under DDP, sees the same targets."""

    def __init__(self, *args: Any, max_angle: float = 45.0, **kwargs: Any) -> None:
        if not 0 < max_angle <= 180:
            raise ConfigError(f"data.max_angle={max_angle} must be in (0, 180] degrees")
        super().__init__(*args, **kwargs)
        self.max_angle = float(max_angle)

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = super()._load(train)
        if train:  # the files against the provides block, while the class labels are at hand
            self._check_provides(images, labels)
        generator = torch.Generator().manual_seed(self.hparams.split_seed + int(train))
        angles = (torch.rand(len(images), generator=generator) * 2 - 1) * self.max_angle
        return rotate(images, angles), angles

    def _item_settings(self) -> dict[str, Any]:
        return {**super()._item_settings(), "rotated_by_up_to": self.max_angle}  # turned images, angle targets

    def _check_provides(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if not targets.is_floating_point():  # the labelled files (_load); angles are not classes
            super()._check_provides(images, targets)

"""Image classification data: any dataset of the image-source registry (scikit-learn digits,
MNIST, Fashion-MNIST, CIFAR-10, ...), normalised with its training-set statistics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from src.data.images import ImageDataModule, NormalizeBatch
from src.data.inputs import field, read_image


class ClassificationDataModule(ImageDataModule):
    """Serves ``(image, label)`` batches, normalised per channel (see :class:`ImageDataModule`);
    for predict.py, a user's image files decoded to the dataset's shape, label -1."""

    input_kind = "image"

    def _collate(self) -> Callable:
        return NormalizeBatch(self.source.mean, self.source.std)

    def encode(self, row: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return read_image(field(row, "image"), self.provides["image_shape"]), torch.tensor(-1)

    def input_collate(self) -> Callable:
        return self._collate()

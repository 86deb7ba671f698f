"""Image classification data: any dataset of the image-source registry (scikit-learn digits,
MNIST, Fashion-MNIST, CIFAR-10, ...), normalised with its training-set statistics."""

from __future__ import annotations

from collections.abc import Callable

from src.data.images import ImageDataModule, NormalizeBatch


class ClassificationDataModule(ImageDataModule):
    """Serves ``(image, label)`` batches, normalised per channel (see :class:`ImageDataModule`)."""

    def _collate(self) -> Callable:
        return NormalizeBatch(self.source.mean, self.source.std)

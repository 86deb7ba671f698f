"""Image generation data: the image datasets scaled to [-1, 1] (the generator's tanh range) and
resized to the shape the data config declares; labels kept for class-conditional models and
for evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from src.core.errors import DataError
from src.data.images import ImageDataModule, NormalizeBatch


class GenerationDataModule(ImageDataModule):
    """Serves ``(image, label)`` batches of real images in [-1, 1] (see :class:`ImageDataModule`).

    - validation compares generated images with the val images.
    - test: two loaders, the test split and as many training images (seeded): the model's
      metrics against the test set, and the real-vs-real floor (train vs test, same features,
      same sample count) that gives them meaning.
    - predict: the labels of the first ``num_samples`` test images, to condition the images
      ``eval.py`` samples; predict.py asks for its own (``{"label": k}`` rows).
    """

    resizes = True
    input_kind = "labels"

    def encode(self, row: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """A label to sample one image of (the image slot stays empty)."""
        return torch.zeros(0), torch.tensor(int(row.get("label") or 0))

    def input_collate(self) -> Callable:
        return default_collate

    def _build(self) -> None:
        super()._build()
        train_images, train_idx = self.train_view
        n_test = len(self.data_test)
        if n_test > len(train_idx):
            raise DataError(f"data={self.hparams.dataset}: the real-vs-real floor needs {n_test} training images "
                            f"(as many as test images) but the training split has {len(train_idx)}")
        pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        self.data_reference: Dataset = Subset(train_images, [train_idx[i] for i in pick[:n_test].tolist()])

    def _collate(self) -> Callable:
        channels, *size = self.provides["image_shape"]
        return NormalizeBatch((0.5,) * channels, (0.5,) * channels, size)

    def train_dataloader(self) -> DataLoader:
        # Full batches only: the discriminator's BatchNorm statistics of a tiny last batch are noise.
        world = self.trainer.world_size if self.trainer is not None else 1
        share = -(-len(self.data_train) // world)  # each process's share of the training images
        return self._loader(self.data_train, train=True, drop_last=share > self.batch_size_per_device)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.data_test), self._loader(self.data_reference)]

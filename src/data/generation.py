"""Image generation data: the classification image datasets, scaled to [-1, 1] (the generator's
tanh range) and resized to the shape the data config declares; labels kept for
class-conditional models and for evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from src.data import classification
from src.data.classification import ImageDataModule, NormalizeBatch, TensorImageDataset
from src.utils.errors import DataError

DATASETS = (*classification.STATS, "easy_vqa")


class ImageGenerationDataModule(ImageDataModule):
    """Serves ``(image, label)`` batches of real images in [-1, 1].

    - train/val: the training split, val carved out with ``split_seed`` (as for classification);
      validation compares generated images with the val images.
    - test: two loaders, the test split and as many training images (seeded): the model's
      metrics against the test set, and the real-vs-real floor (train vs test, same features,
      same sample count) that gives them meaning.
    - predict: the labels of the first ``num_samples`` test images (all by default), to
      condition the images ``eval.py`` samples.
    """

    resizes = True

    def __init__(
        self,
        dataset: str,
        provides: Mapping[str, Any],
        data_dir: str = "data/",
        batch_size: int = 64,
        val_size: int | float = 0.1,
        split_seed: int = 42,
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = True,
        num_samples: int | None = None,
        source: str = "auto",
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(provides, batch_size, class_names)
        if dataset not in DATASETS:
            raise DataError(f"unknown dataset '{dataset}'; choose one of {sorted(DATASETS)}")
        self.save_hyperparameters(logger=False)
        self.data_reference: Dataset | None = None

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.hparams
        if hp.dataset == "easy_vqa":
            # One coloured shape per image; unconditional (a single class), since the shape is
            # only told by some of the questions.
            from src.data.fusion import easy_vqa_root, load_easy_vqa

            images = load_easy_vqa(easy_vqa_root(hp.source, hp.data_dir), "train" if train else "test").images
            return images, torch.zeros(len(images), dtype=torch.long)
        return classification.load_split(hp.dataset, hp.data_dir, train, hp.download, hp.split_seed)

    def prepare_data(self) -> None:
        """Download/extract once per node (Lightning calls this on local rank 0 only)."""
        if self.hparams.dataset in classification.TORCHVISION:
            for train in (True, False):
                self._load(train)

    def _build(self) -> None:
        train_images, train_targets, train_idx, val_idx = self._train_val()
        train_set = TensorImageDataset(train_images, train_targets)
        self.data_train, self.data_val = Subset(train_set, train_idx), Subset(train_set, val_idx)
        self.data_test = TensorImageDataset(*self._load(train=False))
        n_test = len(self.data_test)
        if n_test > len(train_idx):
            raise DataError(f"data={self.hparams.dataset}: the real-vs-real floor needs {n_test} training images "
                            f"(as many as test images) but the training split has {len(train_idx)}")
        pick = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        self.data_reference = Subset(train_set, [train_idx[i] for i in pick[:n_test].tolist()])

    def _collate(self) -> Callable:
        channels, *size = self.provides["image_shape"]
        return NormalizeBatch((0.5,) * channels, (0.5,) * channels, size)

    def train_dataloader(self) -> DataLoader:
        # Full batches only: the discriminator's BatchNorm statistics of a tiny last batch are noise.
        return self._loader(self.data_train, shuffle=True, drop_last=len(self.data_train) > self.batch_size_per_device)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.data_test), self._loader(self.data_reference)]

    def predict_dataloader(self) -> DataLoader:
        n = self.hparams.num_samples
        return self._loader(self.data_test if n is None else Subset(self.data_test, range(min(n, len(self.data_test)))))

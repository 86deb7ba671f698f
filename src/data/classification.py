"""Image classification data: scikit-learn digits (embedded), MNIST, Fashion-MNIST, CIFAR-10."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset, default_collate, random_split
from torchvision import datasets as tvd
from torchvision.transforms import v2

from src.data.common import per_device_batch_size
from src.utils.errors import DataError, describe


# Per-channel mean/std of each training set, for input normalization.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3759,)),  # measured on all 1,797 images
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
TORCHVISION = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}
FOLDERS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}
AUGMENTATIONS: dict[str, Callable[[int], list[v2.Transform]]] = {
    "none": lambda size: [],
    "crop": lambda size: [v2.RandomCrop(size, padding=size // 8)],
    "crop_flip": lambda size: [v2.RandomCrop(size, padding=size // 8), v2.RandomHorizontalFlip()],
}


class TensorImageDataset(Dataset):
    """uint8 images ``(N, C, H, W)`` held in memory; ``transform`` (augmentation) runs per item.

    Every dataset here fits in memory, so decoding once beats torchvision's per-item PIL path.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: Callable | None = None) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        return (self.transform(image) if self.transform else image), self.targets[i]


class NormalizeBatch:
    """Collate uint8 images, then scale to [0, 1], resize to ``size`` (when given) and normalise
    the whole batch at once: one vectorised op instead of two transforms per image (~10 s per
    MNIST epoch on 2 cores)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: Sequence[int] | None = None) -> None:
        resize = [v2.Resize(list(size), antialias=True)] if size is not None else []
        self.transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), *resize, v2.Normalize(mean, std)])

    def __call__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = default_collate(items)
        return self.transform(images), targets


@functools.lru_cache(maxsize=2)
def load_digits_split(test_fraction: float, seed: int) -> dict[bool, tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's 1,797 8x8 digits (pixel values 0-16) as uint8 tensors; it has no official
    test split, so a seeded stratified one is drawn. Cached: setup() asks for both halves."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    to_t = lambda x, y: (torch.from_numpy(x), torch.from_numpy(y).long())  # noqa: E731
    return {True: to_t(x_tr, y_tr), False: to_t(x_te, y_te)}


def load_torchvision(name: str, root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset as uint8 ``(N, C, H, W)`` images and int64 targets.

    torchvision verifies the archives' MD5 and extracts them in place, so ``root`` must be
    writable. A missing dataset that cannot be downloaded becomes a :class:`DataError` saying
    where the files go.
    """
    where = Path(root) / FOLDERS[name]
    try:
        ds = TORCHVISION[name](root, train=train, download=download)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        raise DataError(
            f"{name} could not be loaded from {where} ({describe(e)}). "
            f"Put the original archives in {where}/ (a writable folder; torchvision extracts next to them), "
            "or set DATA_DIR to a folder that has them, or go online with data.download=true."
        ) from e
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)
    return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)


def load_split(dataset: str, data_dir: str, train: bool, download: bool, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The train or test half of any dataset named in :data:`STATS`, as uint8 images and labels."""
    if dataset == "digits":
        return load_digits_split(test_fraction=0.2, seed=split_seed)[train]
    return load_torchvision(dataset, data_dir, train, download)


def train_val_indices(n: int, val_size: int | float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into train and validation indices; a float ``val_size`` is a
    fraction of ``n``. Independent of the training seed: every run sees the same validation set."""
    n_val = int(round(val_size * n)) if isinstance(val_size, float) else val_size
    train_idx, val_idx = random_split(range(n), [n - n_val, n_val], torch.Generator().manual_seed(seed))
    return list(train_idx.indices), list(val_idx.indices)


class ImageDataModule(LightningDataModule):
    """What the in-memory image DataModules share (classification, generation): the check of
    ``provides`` against the files, validation carved out of the training split with
    ``split_seed`` (independent of the training seed, so every run sees the same validation set),
    and loaders of the per-device share of the global ``batch_size``. Subclasses give
    ``_load(train)`` and ``_collate()``."""

    #: the loader resizes images to ``provides.image_shape``, so only channels must match the files
    resizes = False

    def __init__(self, provides: Mapping[str, Any], batch_size: int, class_names: Sequence[str] | None) -> None:
        super().__init__()
        self.provides = dict(provides)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.provides["num_classes"])]
        self.batch_size_per_device = batch_size
        self.data_train: Dataset | None = None
        self.data_val: Dataset | None = None
        self.data_test: Dataset | None = None

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) and labels of the train or test split."""
        raise NotImplementedError

    def _collate(self) -> Callable:
        raise NotImplementedError

    def _build(self) -> None:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.batch_size_per_device = per_device_batch_size(self.hparams.batch_size, self.trainer)
        if self.data_train is None:
            self._build()

    def _check_provides(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        shape, n_classes = list(images.shape[1:]), int(targets.max()) + 1
        declared_shape, declared_classes = list(self.provides["image_shape"]), self.provides["num_classes"]
        compared = (shape[:1], declared_shape[:1]) if self.resizes else (shape, declared_shape)
        if compared[0] != compared[1] or n_classes != declared_classes:
            held = f"{shape[0]}-channel images" if self.resizes else f"images of shape {shape}"
            raise DataError(
                f"data={self.hparams.dataset} declares image_shape={declared_shape}, num_classes={declared_classes} "
                f"but the files hold {held} of {n_classes} classes; fix the provides block of its config"
            )

    def _train_val(self) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
        """The checked training split and its seeded train/validation indices."""
        images, targets = self._load(train=True)
        self._check_provides(images, targets)
        return images, targets, *train_val_indices(len(targets), self.hparams.val_size, self.hparams.split_seed)

    def _loader(self, dataset: Dataset | None, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size_per_device,
            shuffle=shuffle,
            drop_last=drop_last,
            collate_fn=self._collate(),
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val)


class ImageClassificationDataModule(ImageDataModule):
    """Serves ``(image, label)`` batches for one of the datasets named in :data:`STATS`.

    ``batch_size`` is the global batch: each of the trainer's devices gets
    ``batch_size // world_size``. The train/val split is drawn with ``split_seed``, independent
    of the training seed, so runs with different seeds see the same validation set.
    """

    def __init__(
        self,
        dataset: str,
        provides: Mapping[str, Any],
        data_dir: str = "data/",
        batch_size: int = 128,
        val_size: int | float = 0.1,
        split_seed: int = 42,
        augment: str = "none",
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(provides, batch_size, class_names)
        if dataset not in STATS:
            raise DataError(f"unknown dataset '{dataset}'; choose one of {sorted(STATS)}")
        if augment not in AUGMENTATIONS:
            raise DataError(f"unknown augment '{augment}'; choose one of {sorted(AUGMENTATIONS)}")
        self.save_hyperparameters(logger=False)

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.hparams
        return load_split(hp.dataset, hp.data_dir, train, hp.download, hp.split_seed)

    def _collate(self) -> Callable:
        return NormalizeBatch(*STATS[self.hparams.dataset])

    def prepare_data(self) -> None:
        """Download/extract once per node (Lightning calls this on local rank 0 only)."""
        if self.hparams.dataset != "digits":
            for train in (True, False):
                self._load(train)

    def _build(self) -> None:
        train_images, train_targets, train_idx, val_idx = self._train_val()
        augment = AUGMENTATIONS[self.hparams.augment](train_images.shape[-1])
        augmented = v2.Compose(augment) if augment else None
        # Val is carved out of the training set: same split indices for both views, so the
        # validation images are never augmented.
        self.data_train = Subset(TensorImageDataset(train_images, train_targets, augmented), train_idx)
        self.data_val = Subset(TensorImageDataset(train_images, train_targets), val_idx)
        self.data_test = TensorImageDataset(*self._load(train=False))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

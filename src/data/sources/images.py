"""Image datasets as uint8 tensors ``(N, C, H, W)`` with int64 labels, and their statistics.

:data:`IMAGE_SOURCES` is the registry: a new image dataset is one entry here plus its data
config(s). Every dataset here fits in memory, so it is decoded once rather than per item.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tvd

from src.core.errors import DataError, describe
from src.data.sources.easy_vqa import EASY_VQA_STATS, easy_vqa_root, load_easy_vqa
from src.data.sources.image_folder import decode_file, folder_files, folder_validation, read_image_folder

Images = tuple[torch.Tensor, torch.Tensor]


@functools.lru_cache(maxsize=2)
def load_digits_split(test_fraction: float, seed: int) -> dict[bool, Images]:
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


def read_digits(data_dir: str, train: bool, *, download: bool, split_seed: int, source: str) -> Images:
    return load_digits_split(test_fraction=0.2, seed=split_seed)[train]


@functools.lru_cache(maxsize=2)  # prepare_data (download) and setup read the same split: decode it once
def read_torchvision(dataset: type, folder: str, data_dir: str, train: bool, *, download: bool, split_seed: int,
                     source: str) -> Images:
    """A torchvision dataset. torchvision verifies the archives' MD5 and extracts them in place,
    so ``data_dir`` must be writable. A missing dataset that cannot be downloaded, or a corrupt
    one, becomes a :class:`DataError` saying where the files go."""
    where = Path(data_dir) / folder
    try:
        ds = dataset(data_dir, train=train, download=download)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        if where.is_dir() and any(where.iterdir()):
            raise DataError(f"{dataset.__name__} files in {where} are corrupt or incomplete ({describe(e)}); replace "
                            "them with the original archives (torchvision extracts next to them)") from e
        raise DataError(
            f"{dataset.__name__} not found in {where} ({describe(e)}). "
            f"Put the original archives in {where}/ (a writable folder; torchvision extracts next to them), "
            "or set DATA_DIR to a folder that has them, or go online with data.download=true."
        ) from e
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)
    return images.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long)


def read_easy_vqa_images(data_dir: str, train: bool, *, download: bool, split_seed: int, source: str) -> Images:
    """easy-VQA's images, one coloured shape each, all labelled 0: the shape is told only by some
    of the questions, so as an image dataset it is unlabelled."""
    images = load_easy_vqa(easy_vqa_root(source, data_dir), "train" if train else "test").images
    return images, torch.zeros(len(images), dtype=torch.long)


@dataclass(frozen=True)
class ImageSource:
    """How to read one image dataset and its per-channel training-set statistics."""

    read: Callable[..., Images]
    #: None: measured from the files (the data config's ``mean``/``std``, or the training split's)
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    #: read once in ``prepare_data`` (rank 0 of each node) so archives are downloaded/extracted once
    downloads: bool = False
    #: the data config's keys ``read`` (and ``validation``) take as keyword arguments (image_folder: root, ...)
    options: tuple[str, ...] = ()
    #: ``validation(split_seed, **options)``: indices of the training split the dataset itself holds
    #: out for validation (a ``val/`` folder), or None to draw them with ``val_size``
    validation: Callable[..., list[int] | None] | None = None
    #: ``files(split_seed, **options)``: the dataset's files per split without their pixels (see
    #: :func:`~src.data.sources.image_folder.folder_listing`), and ``decode(file, size, channels)``
    #: one of them: ``data.loader=stream`` writes them one at a time (None: written from ``read``)
    files: Callable[..., dict] | None = None
    decode: Callable[..., torch.Tensor | None] | None = None


IMAGE_SOURCES: dict[str, ImageSource] = {
    "digits": ImageSource(read_digits, (0.3053,), (0.3759,)),  # measured on all 1,797 images
    "mnist": ImageSource(functools.partial(read_torchvision, tvd.MNIST, "MNIST/raw"), (0.1307,), (0.3081,), True),
    "fashion_mnist": ImageSource(functools.partial(read_torchvision, tvd.FashionMNIST, "FashionMNIST/raw"),
                                 (0.2860,), (0.3530,), True),
    "cifar10": ImageSource(functools.partial(read_torchvision, tvd.CIFAR10, "cifar-10-batches-py"),
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "easy_vqa": ImageSource(read_easy_vqa_images, *EASY_VQA_STATS),
    # a user's folder of images (src/data/sources/image_folder.py); its statistics come from its files
    "image_folder": ImageSource(read_image_folder, None, None, options=("root", "index", "image_size", "test_size"),
                                validation=folder_validation, files=folder_files, decode=decode_file),
}


def image_source(dataset: str) -> ImageSource:
    if dataset not in IMAGE_SOURCES:
        raise DataError(f"unknown dataset '{dataset}'; choose one of {sorted(IMAGE_SOURCES)} "
                        "(or register it in src/data/sources/images.py)")
    return IMAGE_SOURCES[dataset]

"""Helpers every task's DataModule shares: loader worker settings, the per-device share of the
global batch, seeded train/validation splits, and the image augmentations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning import Trainer
from torch.utils.data import random_split
from torchvision.transforms import v2

from src.utils.errors import ConfigError

AUGMENTATIONS: dict[str, Callable[[int], list[v2.Transform]]] = {
    "none": lambda size: [],
    "crop": lambda size: [v2.RandomCrop(size, padding=size // 8)],
    "crop_flip": lambda size: [v2.RandomCrop(size, padding=size // 8), v2.RandomHorizontalFlip()],
}


def augmentation(name: str, image_size: int) -> v2.Transform | None:
    """The ``data.augment`` pipeline for square images of ``image_size`` (None for ``none``)."""
    if name not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={name!r} is not one of {', '.join(sorted(AUGMENTATIONS))}")
    transforms = AUGMENTATIONS[name](image_size)
    return v2.Compose(transforms) if transforms else None


def worker_options(num_workers: int, pin_memory: bool) -> dict[str, Any]:
    """``DataLoader`` settings from a data config's ``num_workers``/``pin_memory``; workers are kept
    alive across epochs instead of being restarted for each."""
    return {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": num_workers > 0}


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """``data.batch_size`` is global: each of the trainer's devices gets an equal share."""
    world = trainer.world_size if trainer is not None else 1
    if batch_size % world:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {world} devices; pick a multiple of {world}")
    return batch_size // world


def train_val_indices(n: int, val_size: int | float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into train and validation indices; a float ``val_size`` is a
    fraction of ``n``. Independent of the training seed: every run sees the same validation set."""
    n_val = int(round(val_size * n)) if isinstance(val_size, float) else val_size
    train_idx, val_idx = random_split(range(n), [n - n_val, n_val], torch.Generator().manual_seed(seed))
    return list(train_idx.indices), list(val_idx.indices)

"""Helpers the DataModules share: loader worker settings, the per-device share of the global
batch, and the image augmentations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning import Trainer
from torchvision.transforms import v2

from src.utils.errors import ConfigError

AUGMENTATIONS: dict[str, Callable[[int], list[v2.Transform]]] = {
    "none": lambda size: [],
    "crop": lambda size: [v2.RandomCrop(size, padding=size // 8)],
    "crop_flip": lambda size: [v2.RandomCrop(size, padding=size // 8), v2.RandomHorizontalFlip()],
}


def check_augment(name: str) -> str:
    if name not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={name!r} is not one of {', '.join(sorted(AUGMENTATIONS))}")
    return name


def augmentation(name: str, image_size: int) -> v2.Transform | None:
    """The ``data.augment`` pipeline for square images of ``image_size`` (None for ``none``)."""
    transforms = AUGMENTATIONS[check_augment(name)](image_size)
    return v2.Compose(transforms) if transforms else None


def worker_options(num_workers: int, pin_memory: bool) -> dict[str, Any]:
    """``DataLoader`` settings from a data config's ``num_workers``/``pin_memory``; workers are kept
    alive across epochs instead of being restarted for each."""
    return {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": num_workers > 0}


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """``data.batch_size`` is global: each of the trainer's devices gets an equal share."""
    world = trainer.world_size if trainer is not None else 1
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"data.batch_size={batch_size!r} must be a positive whole number of examples")
    if batch_size % world:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {world} devices; pick a multiple of {world}")
    return batch_size // world

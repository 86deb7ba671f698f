"""Helpers every task's DataModule shares."""

from __future__ import annotations

from lightning import Trainer

from src.utils.errors import ConfigError


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """``data.batch_size`` is global: each of the trainer's devices gets an equal share."""
    world = trainer.world_size if trainer is not None else 1
    if batch_size % world:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {world} devices; pick a multiple of {world}")
    return batch_size // world

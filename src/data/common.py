"""Helpers the DataModules share: loaders sharded over processes, the per-device share of the
global batch, and the image augmentations."""

from __future__ import annotations

import os
from collections.abc import Callable

from lightning import Trainer
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import v2

from src.utils.errors import ConfigError

AUGMENTATIONS: dict[str, Callable[[int], list[v2.Transform]]] = {
    "none": lambda size: [],
    "crop": lambda size: [v2.RandomCrop(size, padding=size // 8)],
    "crop_flip": lambda size: [v2.RandomCrop(size, padding=size // 8), v2.RandomHorizontalFlip()],
    # Hinton et al. 2015's MNIST teacher: the image shifted by up to 2 pixels each way (zero-padded)
    "jitter": lambda size: [v2.RandomCrop(size, padding=2)],
}


def check_augment(name: str) -> str:
    if name not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={name!r} is not one of {', '.join(sorted(AUGMENTATIONS))}")
    return name


def augmentation(name: str, image_size: int) -> v2.Transform | None:
    """The ``data.augment`` pipeline for square images of ``image_size`` (None for ``none``)."""
    transforms = AUGMENTATIONS[check_augment(name)](image_size)
    return v2.Compose(transforms) if transforms else None


def loader(dataset: Dataset, batch_size: int, trainer: Trainer | None, train: bool, collate_fn: Callable,
           num_workers: int, pin_memory: bool, drop_last: bool = False, sampler: Sampler | None = None) -> DataLoader:
    """A DataModule's loader, sharded over the trainer's processes by archlab itself (trainers run
    with ``use_distributed_sampler=false``):

    - training: each process a disjoint, equal share (``DistributedSampler``), reshuffled every
      epoch (Lightning calls ``set_epoch``) from the run's seed, the same on every process;
    - evaluation: every example exactly once (Lightning's ``UnrepeatedDistributedSampler``,
      shares differ by at most one example, no padding duplicates), so metrics, which sum their
      states over processes, score exactly what one process scores;
    - one process: the loader's own order (shuffled for training).

    ``sampler``, when given, shards itself (e.g. the length-grouped sampler). Workers are kept
    alive across epochs instead of being restarted for each."""
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    if not train and 0 < len(dataset) < world:  # a process without examples would leave the others waiting
        raise ConfigError(f"an evaluation set of {len(dataset)} examples cannot be shared by {world} processes; "
                          "evaluate more examples or on fewer devices")
    if sampler is None and world > 1:
        # the seed seed_everything set (PL_GLOBAL_SEED), the same in every process; 0 without one
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = (DistributedSampler(dataset, world, rank, shuffle=True, seed=seed) if train
                   else UnrepeatedDistributedSampler(dataset, world, rank, shuffle=False))
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      drop_last=drop_last, collate_fn=collate_fn, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """``data.batch_size`` is global: each of the trainer's devices gets an equal share."""
    world = trainer.world_size if trainer is not None else 1
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"data.batch_size={batch_size!r} must be a positive whole number of examples")
    if batch_size % world:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {world} devices; pick a multiple of {world}")
    return batch_size // world

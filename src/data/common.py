"""Helpers the DataModules share: loaders sharded over processes, the per-device share of the
global batch, and the image augmentations (per image, and the same ones on a whole batch)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sized
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightning import Trainer
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)
from torchvision.transforms import v2

from src.core.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """One ``data.augment`` option, for both image pipelines: a random crop of the image padded by
    ``padding(size)`` pixels of zeros on each side (a shift; none when None), and a random
    horizontal flip. The ``DataLoader`` path applies it per image (:meth:`per_image`), the batch
    path to a whole batch on the training device (:meth:`batch`): the same transform either way."""

    padding: Callable[[int], int] | None = None
    flip: bool = False

    def per_image(self, size: int) -> v2.Transform | None:
        transforms = [v2.RandomCrop(size, padding=self.padding(size))] if self.padding else []
        transforms += [v2.RandomHorizontalFlip()] if self.flip else []
        return v2.Compose(transforms) if transforms else None

    def batch(self, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if not self.padding:
            return None
        padding = self.padding(size)
        return lambda images: random_crop_batch(images, padding, self.flip)


AUGMENTATIONS: dict[str, Augment] = {
    "none": Augment(),
    "crop": Augment(padding=lambda size: size // 8),
    "crop_flip": Augment(padding=lambda size: size // 8, flip=True),
    # Hinton et al. 2015's MNIST teacher: the image shifted by up to 2 pixels each way (zero-padded)
    "jitter": Augment(padding=lambda size: 2),
}


def random_crop_batch(images: torch.Tensor, padding: int, flip: bool = False) -> torch.Tensor:
    """``RandomCrop(size, padding)`` (and ``RandomHorizontalFlip``) on a batch ``(B, C, H, W)``,
    each image with its own offsets, in one gather on the batch's device instead of a Python call
    per image. Zero padding, as torchvision's."""
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n, 1), device=images.device)
    rows = dy + torch.arange(h, device=images.device)  # (B, H)
    cols = dx + torch.arange(w, device=images.device)  # (B, W)
    if flip:
        cols = torch.where(torch.rand(n, 1, device=images.device) < 0.5, cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def check_augment(name: str) -> Augment:
    if name not in AUGMENTATIONS:
        raise ConfigError(f"data.augment={name!r} is not one of {', '.join(sorted(AUGMENTATIONS))}")
    return AUGMENTATIONS[name]


def augmentation(name: str, image_size: int) -> v2.Transform | None:
    """The ``data.augment`` pipeline for one square image of ``image_size`` (None for ``none``)."""
    return check_augment(name).per_image(image_size)


def sharded_sampler(dataset: Sized, trainer: Trainer | None, train: bool) -> Sampler:
    """The order a process visits ``dataset`` in, sharded over the trainer's processes by archlab
    itself (trainers run with ``use_distributed_sampler=false``):

    - training: each process a disjoint, equal share (``DistributedSampler``), reshuffled every
      epoch (Lightning calls ``set_epoch``) from the run's seed, the same on every process;
    - evaluation: every example exactly once (Lightning's ``UnrepeatedDistributedSampler``,
      shares differ by at most one example, no padding duplicates), so metrics, which sum their
      states over processes, score exactly what one process scores;
    - one process: shuffled from the global RNG for training (as ``DataLoader(shuffle=True)``),
      in order for evaluation."""
    world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
    if not train and 0 < len(dataset) < world:  # a process without examples would leave the others waiting
        raise ConfigError(f"an evaluation set of {len(dataset)} examples cannot be shared by {world} processes; "
                          "evaluate more examples or on fewer devices")
    if world == 1:
        return RandomSampler(dataset) if train else SequentialSampler(dataset)
    # the seed seed_everything set (PL_GLOBAL_SEED), the same in every process; 0 without one
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    return (DistributedSampler(dataset, world, rank, shuffle=True, seed=seed) if train
            else UnrepeatedDistributedSampler(dataset, world, rank, shuffle=False))


def loader(dataset: Dataset, batch_size: int, trainer: Trainer | None, train: bool, collate_fn: Callable,
           num_workers: int, pin_memory: bool, drop_last: bool = False, sampler: Sampler | None = None) -> DataLoader:
    """A DataModule's loader over :func:`sharded_sampler`'s order, or over ``sampler`` when given
    (it shards itself, e.g. the length-grouped sampler). Workers are kept alive across epochs
    instead of being restarted for each."""
    sampler = sampler or sharded_sampler(dataset, trainer, train)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, collate_fn=collate_fn,
                      num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)


def per_device_batch_size(batch_size: int, trainer: Trainer | None) -> int:
    """``data.batch_size`` is global: each of the trainer's devices gets an equal share."""
    world = trainer.world_size if trainer is not None else 1
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"data.batch_size={batch_size!r} must be a positive whole number of examples")
    if batch_size % world:
        raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {world} devices; pick a multiple of {world}")
    return batch_size // world

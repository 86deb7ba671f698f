"""Batch-order samplers shared by the text DataModules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Random order in which every run of ``batch_size`` indices has similar lengths, so dynamic
    padding wastes little: shuffle, cut into chunks of ``chunk_batches * batch_size``, sort each
    chunk by length, then shuffle the batches. Seeded by ``seed + epoch`` (Lightning calls
    ``set_epoch``), so a resumed run sees the same batches. (transformers has one too, inside its
    trainer utilities, whose import is slow.)"""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, chunk_batches: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.chunk_batches = torch.as_tensor(lengths), batch_size, seed, chunk_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g)
        chunk = self.batch_size * self.chunk_batches
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start: start + chunk]
            part = part[self.lengths[part].argsort(descending=True, stable=True)]
            batches.extend(part.split(self.batch_size))
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield from batches[b].tolist()

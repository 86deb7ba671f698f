"""Batch-order samplers shared by the text DataModules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Random order in which every batch holds examples of similar lengths, so dynamic padding
    wastes little: shuffle, cut into chunks of ``chunk_batches`` global batches, sort each chunk
    by length, cut it into global batches (``batch_size * num_replicas``), shuffle those.

    Under DDP each process (``rank`` of ``num_replicas``) takes its slice of every global batch,
    so the processes' batches of one step come from one length group, and the last global batch
    is completed from the start of the order, so every process takes the same number of steps.
    Seeded by ``seed + epoch`` (Lightning calls ``set_epoch``), the same on every process, so a
    resumed run sees the same batches. (transformers has one too, inside its trainer utilities,
    whose import is slow.)"""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, chunk_batches: int = 50,
                 num_replicas: int = 1, rank: int = 0) -> None:
        self.lengths, self.batch_size, self.seed, self.chunk_batches = torch.as_tensor(lengths), batch_size, seed, chunk_batches
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_batches(self) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g)
        size = self.batch_size * self.num_replicas
        if self.num_replicas > 1 and len(order) % size:  # complete the last global batch, as DistributedSampler does
            pad = size - len(order) % size
            order = torch.cat([order, order.repeat(-(-pad // len(order)))[:pad]])
        batches = []
        for start in range(0, len(order), size * self.chunk_batches):
            part = order[start: start + size * self.chunk_batches]
            part = part[self.lengths[part].argsort(descending=True, stable=True)]
            batches.extend(part.split(size))
        return [batches[b] for b in torch.randperm(len(batches), generator=g).tolist()]

    def __len__(self) -> int:
        if self.num_replicas == 1:
            return len(self.lengths)
        return -(-len(self.lengths) // (self.batch_size * self.num_replicas)) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for batch in self._global_batches():
            yield from batch[self.rank * self.batch_size: (self.rank + 1) * self.batch_size].tolist()

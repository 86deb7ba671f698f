"""``data.loader=stream``: an image dataset written once as litdata chunks, then streamed from disk.

The chunks of a dataset and its settings go to ``<data_dir>/streams/<dataset>-<fingerprint>/``
(``train``, ``val``, ``test``), written by ``litdata.optimize`` into a temporary sibling that is
renamed when every split is written: a folder that exists is complete, and reused by every run
with the same settings. Training streams its own shard per process (``litdata.StreamingDataset``
and ``StreamingDataLoader``, resumable mid-epoch); evaluation reads the chunks by index through
the same sharding as the in-memory loaders, so every example is scored exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.seed import isolate_rng
from torch.utils.data import Dataset

# litdata asks PyPI for a newer version of itself whenever a dataset is made, unless told not to:
# runs on local chunks stay offline. Read when litdata is imported, so set before any import of it.
os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")

#: how litdata reads items from a chunk: one at a time (``batch_decode=0``: its "auto" takes
#: tensor items for images and deserializes a whole window for every item) and, on training,
#: in a full permutation of the chunk (``item_shuffle_window=0``: "auto" shuffles 256-item
#: blocks, so a batch would come from a few hundred neighbours, a folder's of one class)
READ = {"batch_decode": 0, "item_shuffle_window": 0}
#: a chunk's size: litdata keeps the last few chunks it read mapped in memory (a few per reader),
#: so small chunks keep that window small whatever the dataset's size
CHUNK_BYTES = "8MB"
#: what an item is (``(uint8 image (C, H, W), target tensor)``); a new layout bumps it, so chunks
#: written by an older one are never read as this one's
FORMAT = 1
Item = tuple[torch.Tensor, torch.Tensor]


def stream_dir(data_dir: str | Path, dataset: str, settings: Mapping[str, Any]) -> Path:
    """Where the chunks of ``dataset`` with ``settings`` (everything that changes its items) go:
    ``<data_dir>/streams/<dataset>-<12 hex digits of their hash>``."""
    digest = hashlib.sha256(json.dumps({"format": FORMAT, **settings}, sort_keys=True, default=str).encode())
    return Path(data_dir) / "streams" / f"{dataset}-{digest.hexdigest()[:12]}"


def write_once(where: Path, splits: Callable[[], Mapping[str, tuple[Callable[[Any], Item | None], Iterable[Any]]]],
               num_workers: int = 1) -> bool:
    """Write each split's items (``make(input)`` of every input of ``splits()``, asked for only
    when writing; None skips one) as litdata chunks under ``where/<split>``, unless ``where``
    exists. Returns whether it wrote.

    Written into a temporary sibling renamed at the end, so a killed write is never taken for a
    complete one. The workers fork: ``make`` and its tensors are not pickled."""
    if where.is_dir():
        return False
    from litdata import optimize

    temporary = where.with_name(f"{where.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    with isolate_rng():  # litdata draws from the global RNGs: a run that writes draws as one that reuses
        for split, (make, inputs) in splits().items():
            optimize(make, list(inputs), str(temporary / split), chunk_bytes=CHUNK_BYTES, num_workers=max(1, num_workers),
                     start_method="fork", keep_data_ordered=True, verbose=False)
    try:
        temporary.rename(where)
    except OSError:  # another node, sharing the folder, finished first
        if not where.is_dir():
            raise
        shutil.rmtree(temporary)
    return True


def tensor_item(images: torch.Tensor, targets: torch.Tensor, i: int) -> Item:
    """Item ``i`` of a dataset held in memory."""
    return images[i], targets[i]


def file_item(decode: Callable[[Path, int, int], torch.Tensor | None], size: int, channels: int,
              entry: tuple[Path, int]) -> Item | None:
    """A ``(file, label)`` entry decoded (None when unreadable: skipped)."""
    image = decode(entry[0], size, channels)
    return None if image is None else (image, torch.tensor(entry[1]))


class AugmentImage:
    """The per-image ``data.augment`` transform applied to an item's image (picklable: loader workers)."""

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        self.augment = augment

    def __call__(self, item: Item) -> Item:
        image, target = item
        return (self.augment(image) if self.augment else image), target


class ChunkItems(Dataset):
    """One split's chunks read by index: evaluation goes through the in-memory loaders' sharding
    (:func:`~src.data.common.sharded_sampler`: every example once, across processes), which
    ``StreamingDataset``'s equal shares would not give."""

    def __init__(self, path: Path, transform: AugmentImage | None = None) -> None:
        from litdata import StreamingDataset

        self.path, self.transform = path, transform
        self.stream = StreamingDataset(str(path), **READ)
        # every item of the split: the dataset's own len() is this process's share under DDP
        self.n = sum(chunk["chunk_size"] for chunk in json.loads((path / "index.json").read_text())["chunks"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Item:
        item = self.stream[i]
        return self.transform(item) if self.transform else item


def train_loader(items: ChunkItems, batch_size: int, world_size: int, seed: int, epoch: int, collate: Callable,
                 num_workers: int, pin_memory: bool, drop_last: bool) -> Any:
    """A ``StreamingDataLoader`` over ``items``' chunks, shuffled from ``seed`` and the epoch
    (``epoch`` epochs done before its first).
    litdata finds the process's rank and the world size from the process group Lightning set up
    and streams this process's shard; under DDP every process gets as many full batches (the
    remainder is dropped, as ``drop_last``). Its ``state_dict`` is what Lightning saves to resume
    inside an epoch; augmentation draws from the global RNG (workers: from their seeds), which
    :class:`~src.callbacks.rng_state.RNGState` restores, so one process without workers resumes
    exactly."""
    from litdata import StreamingDataLoader, StreamingDataset

    stream = StreamingDataset(str(items.path), shuffle=True, seed=seed, transform=items.transform,
                              drop_last=drop_last or world_size > 1, **READ)
    # its own generator: a DataLoader draws its workers' base seed at every iterator it makes, and
    # from the global RNG that would shift the augmentation of an epoch resumed mid-way
    loader = StreamingDataLoader(stream, batch_size=batch_size, num_workers=num_workers, collate_fn=collate,
                                 pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed))
    # the loader counts its epochs (each shuffled anew) from the trainer's: a run resumed from an
    # epoch's end goes on with the next epoch's order, not the first's
    loader.current_epoch = epoch
    return loader

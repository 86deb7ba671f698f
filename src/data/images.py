"""What the image DataModules share (classification, generation): reading through the
image-source registry, the check of ``provides`` against the files, a validation set carved out of
the training split, and loaders over the per-device share of the global batch: a ``DataLoader``
with per-image transforms, whole batches sliced from the images on the training device, or
litdata chunks written once and streamed from disk (:mod:`src.data.streams`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import (
    DataLoader,
    Dataset,
    Sampler,
    Subset,
    default_collate,
    random_split,
)
from torchvision.transforms import v2

from src.core.errors import CheckpointError, ConfigError, DataError
from src.data.common import (
    augmentation,
    check_augment,
    loader,
    per_device_batch_size,
    sharded_sampler,
)
from src.data.sources.images import image_source
from src.data.streams import (
    AugmentImage,
    ChunkItems,
    file_item,
    stream_dir,
    tensor_item,
    train_loader,
    write_once,
)


def train_val_indices(n: int, val_size: int | float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into train and validation indices; a float ``val_size`` is a
    fraction of ``n``. Independent of the training seed: every run sees the same validation set."""
    n_val = int(round(val_size * n)) if isinstance(val_size, float) else val_size
    if not 0 < n_val < n:
        raise ConfigError(f"data.val_size={val_size} leaves {n - n_val} of the {n} training images for training and "
                          f"{n_val} for validation; pick a count or fraction that leaves both sides some")
    train_idx, val_idx = random_split(range(n), [n - n_val, n_val], torch.Generator().manual_seed(seed))
    return list(train_idx.indices), list(val_idx.indices)


def label_subset(indices: Sequence[int], targets: torch.Tensor, fraction: float, seed: int) -> list[int]:
    """A seeded, class-balanced ``fraction`` of ``indices``: the same share of every class (at
    least one image each), so a 1 % run still sees all classes in their training proportions.
    Seeded independently of the training seed: scratch and pre-trained runs get the same labels."""
    if fraction == 1:
        return list(indices)
    index = torch.as_tensor(list(indices))
    labels = targets[index]
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c in labels.unique().tolist():
        members = index[labels == c]
        n = max(1, round(fraction * len(members)))
        kept.append(members[torch.randperm(len(members), generator=generator)[:n]])
    return sorted(torch.cat(kept).tolist())


def fold_indices(targets: torch.Tensor, num_folds: int, fold: int, seed: int) -> tuple[list[int], list[int]]:
    """Fold ``fold`` of a seeded, stratified ``num_folds``-fold partition of ``range(len(targets))``:
    (the other folds, this fold). Class labels are stratified on; real-valued targets (regression)
    are split unstratified. The folds partition the split: each index is in exactly one fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(targets)
    if n < num_folds:
        raise ConfigError(f"data.num_folds={num_folds} needs at least {num_folds} training images; the split has {n}")
    labels = targets.numpy()
    counts = torch.bincount(targets) if not targets.is_floating_point() else None
    if counts is None or counts[counts > 0].min() < num_folds:  # a class smaller than the folds: unstratified
        splitter = KFold(num_folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(num_folds, shuffle=True, random_state=seed)
    train_idx, val_idx = list(splitter.split(labels.reshape(n, -1), labels))[fold]
    return sorted(train_idx.tolist()), sorted(val_idx.tolist())


def check_folds(num_folds: int | None, fold: int) -> None:
    if num_folds is None:
        return
    if not isinstance(num_folds, int) or isinstance(num_folds, bool) or num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds!r} must be a whole number of at least 2 (null: no folds)")
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < num_folds:
        raise ConfigError(f"data.fold={fold!r} is out of range for data.num_folds={num_folds}; pick 0..{num_folds - 1}")


LOADERS = ("batches", "items", "stream")


class TensorImageDataset(Dataset):
    """uint8 images ``(N, C, H, W)`` held in memory; ``transform`` (augmentation) runs per item."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: Callable | None = None) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i]
        return (self.transform(image) if self.transform else image), self.targets[i]


class NormalizeBatch:
    """Collate uint8 images, then scale to [0, 1], resize to ``size`` (when given) and normalise
    the whole batch at once: one vectorised op instead of two transforms per image."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: Sequence[int] | None = None) -> None:
        resize = [v2.Resize(list(size), antialias=True)] if size is not None else []
        self.transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), *resize, v2.Normalize(mean, std)])

    def __call__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = default_collate(items)
        return self.transform(images), targets


class BatchLoader:
    """Batches sliced from uint8 images held on the training device, augmented and normalised a
    whole batch at a time (airbench's loading): no per-image Python, no collate, no host-to-device
    copy. Visits ``indices`` in the order of ``sampler`` (the same sharding and shuffling as the
    ``DataLoader`` path; Lightning calls ``sampler.set_epoch``).

    Resumable mid-epoch through Lightning's stateful-loader protocol (``state_dict`` and
    ``load_state_dict``, saved with the fit loop in every checkpoint): the position reached in the
    epoch's order, and the order itself where the sampler cannot draw it again (a ``RandomSampler``
    shuffles from the global RNG; a sampler with ``set_epoch`` reshuffles from its seed and epoch,
    so each DDP process redraws its own share). Augmentation draws from the global RNG, which
    :class:`~src.callbacks.rng_state.RNGState` restores, so a resumed epoch goes on with the very
    batches an uninterrupted one draws."""

    #: Lightning calls ``set_epoch`` on a loader's ``sampler`` and then reads its ``batch_sampler``
    batch_sampler = None

    def __init__(self, dataset: TensorImageDataset | Subset, images: torch.Tensor, targets: torch.Tensor, sampler: Sampler,
                 batch_size: int, normalize: Callable[[torch.Tensor], torch.Tensor],
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None, drop_last: bool = False) -> None:
        """``images`` and ``targets``: the tensors of ``dataset`` (or of the dataset it is a Subset
        of), already on the training device; ``normalize`` scales a sliced uint8 batch."""
        self.dataset, self.images, self.targets, self.sampler = dataset, images, targets, sampler
        indices = dataset.indices if isinstance(dataset, Subset) else range(len(dataset))
        self.indices = torch.as_tensor(list(indices), device=images.device)
        self.batch_size, self.normalize, self.augment, self.drop_last = batch_size, normalize, augment, drop_last
        self._order: torch.Tensor | None = None  # the current epoch's sampler order, once drawn
        self._served = 0  # examples of it served
        self._resume: dict[str, Any] | None = None  # a checkpoint's state, for the next iteration

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # taken now, not when the first batch is: Lightning creates the resumed epoch's iterator
        # right after loading the state, and draws nothing from it when that epoch had ended
        resume, self._resume = self._resume, None
        return self._batches(resume)

    def _batches(self, resume: dict[str, Any] | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # the order is drawn at the first batch, after Lightning's set_epoch
        self._order = resume["order"] if resume and "order" in resume else torch.as_tensor(list(self.sampler))
        self._served = resume["served"] if resume else 0
        if len(self._order) != len(self.sampler):
            raise CheckpointError(f"the checkpoint's training loader was in an epoch of {len(self._order)} examples, "
                                  f"this run's has {len(self.sampler)}; resume with the data settings it was trained with")
        order = self.indices[self._order.to(self.indices.device)]
        end = min(len(self) * self.batch_size, len(order))
        while self._served < end:
            index = order[self._served: self._served + self.batch_size]
            self._served += len(index)
            images = self.images[index]
            if self.augment is not None:
                images = self.augment(images)
            yield self.normalize(images), self.targets[index]

    def state_dict(self) -> dict[str, Any]:
        """Where the current epoch stands (empty before the first one)."""
        if self._order is None:
            return {}
        state: dict[str, Any] = {"served": self._served}
        if not hasattr(self.sampler, "set_epoch"):
            state["order"] = self._order.cpu()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning calls this only when it resumes inside an epoch."""
        self._resume = state_dict or None


class ImageDataModule(LightningDataModule):
    """``(image, label)`` batches of one dataset of :data:`~src.data.sources.images.IMAGE_SOURCES`.

    - ``batch_size`` is global: each device gets ``batch_size // world_size``.
    - ``label_fraction``: the share of the training images kept (class-balanced, seeded by
      ``split_seed``; see :func:`label_subset`): few-label fine-tuning. Validation and test are whole.
    - validation: ``val_size`` images (a float: a fraction) of the training split, drawn with
      ``split_seed``, independent of the training seed, so every run sees the same validation set;
      never augmented (``augment`` applies to the training images only). A dataset that holds its
      own validation images (a folder's ``val/``) uses those.
    - k-fold cross-validation: ``num_folds`` (null: none) stratified folds of the training split,
      drawn with ``split_seed``; fold ``fold`` is the validation set, the others train. The test
      split is untouched.
    - ``mean``/``std``: the normalisation of a source that measures it from its files
      (``image_folder``: the config resolves them); ``**options``: the source's own settings.
    - predict (eval.py): the first ``num_samples`` test images (null: all).
    - ``loader``: ``batches`` (:class:`BatchLoader`: the images on the training device, batches
      sliced, augmented and normalised as tensors), ``items`` (a ``DataLoader`` with per-image
      augmentation, ``num_workers`` and ``pin_memory``) or ``stream`` (the splits written once as
      litdata chunks under ``data_dir/streams/``; training streams its shard of them, evaluation
      reads them as ``items`` does). ``batches`` and ``items`` shard and shuffle alike; all three
      give identical evaluation batches; training draws its shuffles and augmentations differently.
      ``trainer.overfit_batches`` takes the ``items`` path (Lightning rebuilds its DataLoader).

    Subclasses give ``_collate()`` (how a batch is scaled) and may add test loaders.
    """

    #: the collate resizes images to ``provides.image_shape``, so only channels must match the files
    resizes = False

    def __init__(
        self,
        dataset: str,
        provides: Mapping[str, Any],
        data_dir: str = "data/",
        batch_size: int = 64,
        val_size: int | float = 0.1,
        split_seed: int = 42,
        label_fraction: float = 1.0,
        augment: str = "none",
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = True,
        source: str = "auto",
        num_samples: int | None = None,
        loader: str = "batches",
        num_folds: int | None = None,
        fold: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.source = image_source(dataset)
        unknown = sorted(set(options) - set(self.source.options))
        if unknown:
            raise ConfigError(f"data.{unknown[0]} is not a setting of dataset={dataset}"
                              + (f" (its settings: {', '.join(self.source.options)})" if self.source.options else ""))
        self.options = options
        if mean is not None and std is not None:
            self.source = replace(self.source, mean=tuple(mean), std=tuple(std))
        check_folds(num_folds, fold)
        self.provides = dict(provides)
        check_augment(augment)
        if loader not in LOADERS:
            raise ConfigError(f"data.loader={loader!r} is not one of {', '.join(LOADERS)}")
        if not 0 < label_fraction <= 1:
            raise ConfigError(f"data.label_fraction={label_fraction} must be in (0, 1]: the share of training labels kept")
        self.batch_size_per_device = batch_size
        self.data_train: Dataset | None = None
        self.data_val: Dataset | None = None
        self.data_test: Dataset | None = None
        #: the training images un-augmented, and the training indices into them
        self.train_view: tuple[Dataset, Sequence[int]] | None = None
        self._on_device: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _collate(self) -> NormalizeBatch:
        raise NotImplementedError

    def prepare_inputs(self) -> None:
        """predict.py: nothing to prepare; the dataset's files are not read."""

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, C, H, W) and labels of the train or test split."""
        hp = self.hparams
        return self.source.read(hp.data_dir, train, download=hp.download, split_seed=hp.split_seed, source=hp.source,
                                **self.options)

    def _split(self, targets: torch.Tensor, held_out: Sequence[int] | None) -> tuple[list[int], list[int]]:
        """Training and validation indices of the training split: fold ``fold`` of ``num_folds``,
        the dataset's own validation images (``held_out``), or ``val_size`` drawn with ``split_seed``;
        the training ones thinned to ``label_fraction``."""
        train_idx, val_idx = self._draw_split(targets, held_out)
        return label_subset(train_idx, targets, self.hparams.label_fraction, self.hparams.split_seed), val_idx

    def _draw_split(self, targets: torch.Tensor, held_out: Sequence[int] | None) -> tuple[list[int], list[int]]:
        hp = self.hparams
        if hp.num_folds is not None:
            return fold_indices(targets, hp.num_folds, hp.fold, hp.split_seed)
        if held_out:
            held = set(held_out)
            return [i for i in range(len(targets)) if i not in held], list(held_out)
        return train_val_indices(len(targets), hp.val_size, hp.split_seed)

    def prepare_data(self) -> None:
        """Download/extract (``stream``: write the chunks) once per node (Lightning calls this on
        local rank 0 only)."""
        if self.hparams.loader == "stream":
            write_once(self._stream_dir(), self._stream_splits, self.hparams.num_workers)
        elif self.source.downloads:
            for train in (True, False):
                self._load(train)

    def setup(self, stage: str | None = None) -> None:
        self.batch_size_per_device = per_device_batch_size(self.hparams.batch_size, self.trainer)
        if self.data_train is None:
            self._build()

    def _item_settings(self) -> dict[str, Any]:
        """Everything that changes the written items: their chunks' fingerprint (classification and
        generation write the same items, so share them)."""
        hp = self.hparams
        return {"dataset": hp.dataset, "source": hp.source, "split_seed": hp.split_seed,
                "val_size": hp.val_size, "num_folds": hp.num_folds, "fold": hp.fold, "label_fraction": hp.label_fraction,
                **{k: str(Path(v).expanduser().resolve()) if k in ("root", "index") and v else v
                   for k, v in self.options.items()}}

    def _stream_dir(self) -> Path:
        return stream_dir(self.hparams.data_dir, self.hparams.dataset, self._item_settings())

    def _stream_splits(self) -> dict[str, tuple[Callable, Sequence]]:
        """Each split's item maker and inputs: a file listing decoded one file at a time where the
        source has one (a folder may not fit in memory), else the tensors ``_load`` holds."""
        hp = self.hparams
        if self.source.files is not None:
            listing = self.source.files(hp.split_seed, **self.options)
            (entries, targets), test = listing["train"], listing["test"][0]
            make = functools.partial(file_item, self.source.decode, self.options.get("image_size", 32),
                                     self.provides["image_shape"][0])
            train_idx, val_idx = self._split(targets, listing["val_indices"])
            train_idx = [train_idx[k] for k in self._written_order(len(train_idx))]
            return {"train": (make, [entries[i] for i in train_idx]), "val": (make, [entries[i] for i in val_idx]),
                    "test": (make, test)}
        images, targets = self._load(train=True)
        self._check_provides(images, targets)
        train_idx, val_idx = self._split(targets, self._held_out())
        test_images, test_targets = self._load(train=False)
        make, make_test = (functools.partial(tensor_item, images, targets),
                           functools.partial(tensor_item, test_images, test_targets))
        return {"train": (make, [train_idx[k] for k in self._written_order(len(train_idx))]), "val": (make, val_idx),
                "test": (make_test, range(len(test_targets)))}

    def _written_order(self, n: int) -> list[int]:
        """The order the ``n`` training examples are written in, drawn with ``split_seed``: litdata
        shuffles chunks and the items within each, so a chunk must not hold a folder's one class."""
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.split_seed)).tolist()

    def _held_out(self) -> list[int] | None:
        return self.source.validation(self.hparams.split_seed, **self.options) if self.source.validation else None

    def _build_stream(self) -> None:
        """The written chunks as datasets (written here when ``prepare_data`` was not called)."""
        where = self._stream_dir()
        if not where.is_dir():
            self.prepare_data()
        if self.source.mean is None:
            raise ConfigError(f"data.loader=stream needs the statistics of data={self.hparams.dataset} in its config "
                              "(data.mean and data.std); state them, or use data.loader=batches")
        self.data_val, self.data_test, plain_train = (ChunkItems(where / split) for split in ("val", "test", "train"))
        # augmentation acts on the stored images, before any resize to provides.image_shape
        augment = augmentation(self.hparams.augment, self.data_test[0][0].shape[-1])
        self.data_train = ChunkItems(where / "train", AugmentImage(augment))
        # where each training example (in the in-memory loaders' order) was written
        written = torch.empty(len(plain_train), dtype=torch.long)
        written[self._written_order(len(plain_train))] = torch.arange(len(plain_train))
        self.train_view = (plain_train, written.tolist())

    def _build(self) -> None:
        """``data_train``, ``data_val``, ``data_test`` and ``train_view``: from the chunks (``stream``)
        or the images in memory."""
        if self.hparams.loader == "stream":
            self._build_stream()
            return
        images, targets = self._load(train=True)
        self._check_provides(images, targets)
        hp = self.hparams
        train_idx, val_idx = self._split(targets, self._held_out())
        if self.source.mean is None:  # measured from the training images (a config gives them to predict.py)
            pixels = images[train_idx].double().div(255).transpose(0, 1).flatten(1)
            self.source = replace(self.source, mean=tuple(pixels.mean(1).tolist()), std=tuple(pixels.std(1).tolist()))
        # augmentation acts on the stored images, before any resize to provides.image_shape
        augment = augmentation(hp.augment, images.shape[-1])
        # two views of the same training split: the validation images are never augmented
        self.data_train = Subset(TensorImageDataset(images, targets, augment), train_idx)
        self.data_val = Subset(TensorImageDataset(images, targets), val_idx)
        self.data_test = TensorImageDataset(*self._load(train=False))
        self.train_view = (self.data_val.dataset, train_idx)

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

    def _loader(self, dataset: Dataset | None, train: bool = False, drop_last: bool = False) -> DataLoader | BatchLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        # trainer.overfit_batches rebuilds a DataLoader with a sequential sampler: the items path
        overfit = getattr(self.trainer, "overfit_batches", 0)
        if self.hparams.loader == "batches" and not overfit:
            return self._batch_loader(dataset, train, drop_last)
        if self.hparams.loader == "stream" and train and not overfit:
            world = self.trainer.world_size if self.trainer is not None else 1
            # the run's seed (seed_everything's PL_GLOBAL_SEED), the same in every process
            return train_loader(dataset, self.batch_size_per_device, world, int(os.environ.get("PL_GLOBAL_SEED", "0")),
                                getattr(self.trainer, "current_epoch", 0), self._collate(), self.hparams.num_workers,
                                self.hparams.pin_memory, drop_last)
        return loader(dataset, self.batch_size_per_device, self.trainer, train, self._collate(), self.hparams.num_workers,
                      self.hparams.pin_memory, drop_last)

    def _batch_loader(self, dataset: Dataset, train: bool, drop_last: bool) -> BatchLoader:
        """A :class:`BatchLoader` over ``dataset`` (a :class:`TensorImageDataset` or a Subset of
        one), whose tensors go to the training device once, shared by every loader over them."""
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        key = id(base.images)  # the training and validation datasets share their tensors: one copy
        if key not in self._on_device or self._on_device[key][0].device != device:
            self._on_device[key] = (base.images.to(device), base.targets.to(device))
        augment = check_augment(self.hparams.augment).batch(base.images.shape[-1]) if train else None
        return BatchLoader(dataset, *self._on_device[key], sharded_sampler(dataset, self.trainer, train),
                           self.batch_size_per_device, self._collate().transform, augment, drop_last)

    def train_dataloader(self) -> DataLoader | BatchLoader:
        return self._loader(self.data_train, train=True)

    def val_dataloader(self) -> DataLoader | BatchLoader:
        return self._loader(self.data_val)

    def test_dataloader(self) -> DataLoader | BatchLoader | list[DataLoader | BatchLoader]:
        return self._loader(self.data_test)

    def test_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test examples as one batch, as the test loader makes them: what
        compress.py calibrates and times the net on."""
        return self._collate()([self.data_test[i] for i in range(min(n, len(self.data_test)))])

    def predict_dataloader(self) -> DataLoader | BatchLoader:
        n = self.hparams.num_samples
        return self._loader(self.data_test if n is None else Subset(self.data_test, range(min(n, len(self.data_test)))))

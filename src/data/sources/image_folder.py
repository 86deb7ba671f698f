"""A user's own images: a folder with one sub-folder per class (torchvision's ``ImageFolder``
layout, optionally under ``train/``, ``val/``, ``test/``), or an index file (CSV or JSON Lines
rows ``path,label[,split]``, paths relative to the index file).

Every image is decoded once with PIL, resized to ``image_size`` x ``image_size`` (the shorter
side scaled to ``image_size``, then the centre cropped: the aspect ratio is kept) and held in
memory as one uint8 tensor, as the other image sources; predict.py reads an input the same way
(``src.data.inputs.read_image``). Grayscale modes stay one channel when every image is
grayscale; otherwise every image becomes RGB (PIL's ``convert("RGB")``: palettes expanded, an
alpha channel dropped). An unreadable or truncated image is skipped; the count is one warning.

What a data config needs before any file is read by a DataModule (class names, image shape, the
training split's mean and std) comes from :func:`folder_resolver` (``${image_folder:...}``),
computed from the files once per process (cached) when the config resolves. With
``data.loader=stream`` nothing is held: :func:`folder_listing` lists the files of each split,
:func:`decode_file` decodes one, and the statistics are summed one image at a time."""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.core.errors import ConfigError, DataError, describe
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

#: the file endings read as images (torchvision's ``IMG_EXTENSIONS``, less the rare ones)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
#: split -> the sub-folder names (or index ``split`` values) that hold it
SPLIT_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
LAYOUT = ("one sub-folder of images per class (root/<class>/*.png), optionally inside train/, val/ and test/; "
          "or data.index=<file.csv|file.jsonl> with path,label rows")

Files = list[tuple[Path, int]]


@dataclass(frozen=True)
class Folder:
    """Images and labels per split (``train``, ``val``, ``test``; absent splits are not keys)."""

    class_names: tuple[str, ...]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def channels(self) -> int:
        return next(iter(self.splits.values()))[0].shape[1]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_folder(root: Path) -> tuple[list[str], dict[str, Files]]:
    """Class names and (file, label) per split of a folder tree."""
    split_dirs = {split: next((root / n for n in names if (root / n).is_dir()), None) for split, names in SPLIT_NAMES.items()}
    if split_dirs["train"] is None:
        if split_dirs["val"] or split_dirs["test"]:
            raise DataError(f"{root} has val/ or test/ but no train/ folder; add train/<class>/ folders, or put "
                            "the class folders directly in the root (the splits are then drawn with data.split_seed)")
        split_dirs = {"all": root}
    else:
        split_dirs = {split: d for split, d in split_dirs.items() if d is not None}
    classes = [p.name for p in _class_folders(split_dirs.get("train", root))]
    if not classes:
        loose = _images_in(split_dirs.get("train", root))
        where = split_dirs.get("train", root)
        raise DataError(f"{where} holds {'images but no class folders' if loose else 'no images'}; expected {LAYOUT}")
    files: dict[str, Files] = {}
    for split, folder in split_dirs.items():
        files[split] = []
        for class_dir in _class_folders(folder):
            if class_dir.name not in classes:
                raise DataError(f"{class_dir} is a class the training folder lacks ({', '.join(classes)}); "
                                f"add {split_dirs.get('train', root)}/{class_dir.name}/ or remove it")
            found = _images_in(class_dir)
            if not found:
                raise DataError(f"class folder {class_dir} holds no images ({', '.join(EXTENSIONS)}); "
                                "add images or remove the folder")
            files[split] += [(p, classes.index(class_dir.name)) for p in found]
    return classes, files


def _read_index(index: Path) -> list[dict[str, Any]]:
    try:
        if index.suffix.lower() == ".csv":
            with open(index, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        if index.suffix.lower() in (".jsonl", ".json"):
            with open(index, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise DataError(f"data.index={index} could not be read ({describe(e)}); fix or replace the file") from e
    raise ConfigError(f"data.index={index} is neither .csv nor .jsonl; write the path,label rows as one of those")


def _list_index(index: Path) -> tuple[list[str], dict[str, Files]]:
    """Class names and (file, label) per split of an index file; a ``split`` column (train, val,
    test) keeps the user's split, else every row is drawn from with data.split_seed."""
    if not index.is_file():
        raise DataError(f"data.index={index} does not exist; point it at a CSV or JSON Lines file of path,label rows")
    rows = _read_index(index)
    if not rows:
        raise DataError(f"data.index={index} holds no rows; add path,label rows (paths relative to the file)")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict) or not r.get("path") or r.get("label") in (None, "")), None)
    if bad is not None:
        raise DataError(f"data.index={index}: row {bad + 1} lacks a path or a label; every row needs both "
                        "(columns path,label; optional split: train, val or test)")
    labels = {str(r["label"]) for r in rows}
    numeric = all(label.lstrip("-").isdigit() for label in labels)
    classes = sorted(labels, key=(lambda s: int(s)) if numeric else None)
    splits = {name: split for split, names in SPLIT_NAMES.items() for name in names}
    files: dict[str, Files] = {}
    for r in rows:
        split = str(r.get("split") or "").strip().lower()
        if split and split not in splits:
            raise DataError(f"data.index={index}: split {split!r} is not one of train, val, test")
        files.setdefault(splits.get(split, "all"), []).append((index.parent / str(r["path"]), classes.index(str(r["label"]))))
    if "all" in files and len(files) > 1:
        raise DataError(f"data.index={index}: some rows name a split and some do not; name one for every row or none")
    if "all" not in files and "train" not in files:
        raise DataError(f"data.index={index}: no row is in the train split")
    return classes, files


def _decode(path: Path, size: int) -> torch.Tensor:
    """One image as uint8 ``(1, size, size)`` (a grayscale mode) or ``(3, size, size)``: decoded,
    resized and centre-cropped exactly as predict.py reads an input (:func:`read_image`), so a
    model sees the same pixels at training and at prediction. Raises on an unreadable or
    truncated file."""
    from PIL import Image

    from src.data.inputs import read_image

    with Image.open(path) as image:  # the header only: the mode
        channels = 1 if image.mode in GRAY_MODES else 3
    return read_image(path, (channels, size, size))


def check_image_size(image_size: Any) -> None:
    """A bad ``data.image_size`` is one line before any file is decoded."""
    if not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"data.image_size={image_size!r} must be a positive whole number of pixels")


def _to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """A grayscale image among colour ones: its one channel repeated (as PIL's ``convert("RGB")``)."""
    return image.expand(channels, -1, -1) if len(image) < channels else image


def decode_file(path: Path, size: int, channels: int) -> torch.Tensor | None:
    """One file as the in-memory folder holds it (``(channels, size, size)`` uint8), or None when it
    is unreadable: what ``data.loader=stream`` writes, one file at a time."""
    try:
        return _to_channels(_decode(path, size), channels)
    except Exception:  # noqa: BLE001 - as load_folder: PIL raises OSError, ValueError, SyntaxError... per format
        return None


class Moments:
    """Per-channel mean and (unbiased) std of uint8 images, summed in float64 a batch ``(N, C, H, W)``
    or an image ``(C, H, W)`` at a time: a folder's statistics without holding its pixels."""

    def __init__(self) -> None:
        self.n, self.sum, self.squares = 0, torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)

    def add(self, images: torch.Tensor) -> None:
        pixels = images.double().div_(255)
        pixels = pixels.transpose(0, 1).flatten(1) if pixels.ndim == 4 else pixels.flatten(1)
        self.sum = self.sum + pixels.sum(1) if self.n else pixels.sum(1)
        self.squares = self.squares + pixels.square().sum(1) if self.n else pixels.square().sum(1)
        self.n += pixels.shape[1]

    def mean_std(self) -> tuple[list[float], list[float]]:
        mean = self.sum / self.n
        std = ((self.squares - self.n * mean.square()) / (self.n - 1)).clamp_min(0).sqrt()
        return [round(float(m), 4) for m in mean], [round(max(float(s), 1e-3), 4) for s in std]


def _listing(root: str | None, index: str | None) -> tuple[Path, list[str], dict[str, Files]]:
    """The folder (or index) read, its class names and its (file, label) entries per split."""
    kind, path = _where(root, index)
    return path, *(_list_index(path) if kind == "index" else _list_folder(path))


def _where(root: str | None, index: str | None) -> tuple[str, Path]:
    if index:
        return "index", Path(index).expanduser()
    if not root:
        raise ConfigError(f"data=image_folder needs data.root=DIR (or data.index=FILE): {LAYOUT}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data.root={root} does not exist; point data.root at a folder with {LAYOUT}")
    return "root", path


def decode_images(files: Sequence[Path], size: int, where: Path, expected: str) -> tuple[torch.Tensor, list[int]]:
    """The readable ``files`` as one uint8 ``(N, C, size, size)`` tensor (:func:`_decode`) and their
    positions in ``files``. ``C`` is 1 when every image is grayscale, else 3 (a grayscale image's
    channel repeated, as PIL's ``convert("RGB")``). An unreadable or truncated file is skipped and
    the count is one warning; none readable is a one-line error naming what was ``expected``."""
    arrays: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[str] = []
    for i, file in enumerate(files):
        try:
            arrays.append(_decode(file, size))
            kept.append(i)
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError... per format
            skipped.append(f"{file.name} ({describe(e, 60)})")
    if skipped:
        log.warning(f"{where}: skipped {len(skipped)} unreadable or truncated images of {len(files)} "
                    f"(e.g. {skipped[0]}); replace or remove them")
    if not arrays:
        raise DataError(f"{where}: none of its {len(files)} images could be read; expected {expected}")
    gray = all(len(a) == 1 for a in arrays)
    return torch.stack([_to_channels(a, 1 if gray else 3) for a in arrays]).contiguous(), kept


@functools.lru_cache(maxsize=2)
def load_folder(root: str | None, index: str | None, image_size: int) -> Folder:
    """Every image of a folder (or index), decoded once per process: what the config resolver
    and the DataModule read."""
    check_image_size(image_size)
    path, classes, files = _listing(root, index)
    entries = [(split, file, label) for split, split_files in files.items() for file, label in split_files]
    images, kept = decode_images([file for _, file, _ in entries], image_size, path, LAYOUT)
    splits = {}
    for split in files:
        rows = [row for row, i in enumerate(kept) if entries[i][0] == split]
        if not rows:
            raise DataError(f"{path}: no image of the {split} split could be read; replace its files")
        splits[split] = (images[rows], torch.tensor([entries[kept[row]][2] for row in rows], dtype=torch.long))
    return Folder(tuple(classes), splits)


def _carve(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified indices (kept, carved) of a split: ``fraction`` of each class carved
    (when every class has two images or more; else a seeded random share)."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    n_out = int(round(fraction * n)) if isinstance(fraction, float) else int(fraction)
    if not 0 < n_out < n:
        raise ConfigError(f"data.test_size={fraction} leaves {n - n_out} of the {n} images for training and {n_out} "
                          "for testing; pick a fraction that leaves both sides some (or add a test/ folder)")
    counts = torch.bincount(labels)
    stratify = labels.numpy() if counts[counts > 0].min() >= 2 and n_out >= len(counts[counts > 0]) else None
    kept, out = train_test_split(np.arange(n), test_size=n_out, random_state=seed, stratify=stratify)
    return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(out))


Split = tuple[Any, torch.Tensor]  # (images tensor or list of files, labels)


def _take(items: Any, index: torch.Tensor) -> Any:
    return items[index] if isinstance(items, torch.Tensor) else [items[i] for i in index.tolist()]


def _arrange(splits: dict[str, Split], test_size: float, split_seed: int) -> tuple[Split, Split, list[int] | None]:
    """The training split (with ``val/``'s items last), the test split (carved with ``test_size``
    when there is no ``test/``) and the indices of the ``val/`` items; of decoded images or of
    listed files alike, so both loaders split a folder the same way."""
    splits = dict(splits)
    if "all" in splits:
        splits["train"] = splits.pop("all")
    if "test" not in splits:
        items, labels = splits["train"]
        kept, carved = _carve(labels, test_size, split_seed)
        splits["train"], splits["test"] = (_take(items, kept), labels[kept]), (_take(items, carved), labels[carved])
    (items, labels), val_indices = splits["train"], None
    if "val" in splits:
        val_items, val_labels = splits["val"]
        val_indices = list(range(len(labels), len(labels) + len(val_labels)))
        items = torch.cat([items, val_items]) if isinstance(items, torch.Tensor) else items + val_items
        labels = torch.cat([labels, val_labels])
    return (items, labels), splits["test"], val_indices


@functools.lru_cache(maxsize=4)
def folder_splits(root: str | None, index: str | None, image_size: int, test_size: float,
                  split_seed: int) -> dict[str, Any]:
    """The training split (with ``val/``'s images last, their indices in ``val_indices``), the test
    split, and the training split's per-channel mean and std."""
    folder = load_folder(root, index, image_size)
    train, test, val_indices = _arrange(folder.splits, test_size, split_seed)
    moments = Moments()
    moments.add(train[0])
    return {"train": train, "test": test, "val_indices": val_indices, **_provides(folder.class_names, folder.channels,
                                                                                  image_size, moments)}


def _provides(class_names: Sequence[str], channels: int, image_size: int, moments: Moments) -> dict[str, Any]:
    mean, std = moments.mean_std()
    return {"class_names": list(class_names), "num_classes": len(class_names), "channels": channels,
            "image_shape": [channels, image_size, image_size], "mean": mean, "std": std}


@functools.lru_cache(maxsize=4)
def folder_listing(root: str | None, index: str | None, test_size: float, split_seed: int) -> dict[str, Any]:
    """:func:`folder_splits` without decoding: ``train`` and ``test`` as (files, labels), the
    ``val_indices`` of ``val/``'s files, the class names. Split over the listed files, so an
    unreadable file (skipped when decoded) can shift the split against the in-memory loaders'."""
    _, classes, files = _listing(root, index)
    splits = {split: (entries, torch.tensor([label for _, label in entries], dtype=torch.long))
              for split, entries in files.items()}
    train, test, val_indices = _arrange(splits, test_size, split_seed)
    return {"train": (list(train[0]), train[1]), "test": (list(test[0]), test[1]), "val_indices": val_indices,
            "class_names": classes}


@functools.lru_cache(maxsize=4)
def folder_stats(root: str | None, index: str | None, image_size: int, test_size: float,
                 split_seed: int) -> dict[str, Any]:
    """What :data:`RESOLVED` needs, one file at a time (nothing held): the channels from every
    file's header (1 when every image is grayscale), then the training split's statistics."""
    from PIL import Image

    check_image_size(image_size)
    listing = folder_listing(root, index, test_size, split_seed)

    def gray(path: Path) -> bool:
        try:
            with Image.open(path) as image:
                return image.mode in GRAY_MODES
        except Exception:  # noqa: BLE001 - an unreadable file is skipped when decoded
            return True

    files = [path for path, _ in listing["train"][0] + listing["test"][0]]
    channels = 1 if all(gray(path) for path in files) else 3
    moments, skipped = Moments(), 0
    for path, _ in listing["train"][0]:
        image = decode_file(path, image_size, channels)
        if image is None:
            skipped += 1
        else:
            moments.add(image)
    if skipped:
        log.warning(f"{root or index}: skipped {skipped} unreadable or truncated images of the {len(listing['train'][0])} "
                    "training images; replace or remove them")
    if not moments.n:
        raise DataError(f"{root or index}: none of its training images could be read; expected {LAYOUT}")
    return _provides(listing["class_names"], channels, image_size, moments)


RESOLVED = ("class_names", "num_classes", "channels", "image_shape", "mean", "std")


def folder_resolver(key: str, root: str | None, index: str | None, image_size: int, test_size: float,
                    split_seed: int, loader: str = "batches") -> Any:
    """``${image_folder:<key>,root,index,image_size,test_size,split_seed,loader}``: one of
    :data:`RESOLVED` computed from the files (cached per folder and settings); for
    ``loader=stream`` one file at a time, so a folder larger than memory resolves."""
    if key not in RESOLVED:
        raise ConfigError(f"${{image_folder:{key},...}}: the key is one of {', '.join(RESOLVED)}")
    measure = folder_stats if loader == "stream" else folder_splits
    return measure(root, index, image_size, test_size, split_seed)[key]


def read_image_folder(data_dir: str, train: bool, *, download: bool, split_seed: int, source: str, root: str | None = None,
                      index: str | None = None, image_size: int = 32, test_size: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The registry's reader: the training split (``val/`` included, last) or the test split."""
    return folder_splits(root, index, image_size, test_size, split_seed)["train" if train else "test"]


def folder_validation(split_seed: int, root: str | None = None, index: str | None = None, image_size: int = 32,
                      test_size: float = 0.2) -> list[int] | None:
    """The indices of the training split that ``val/`` (or the index's val rows) holds; None
    when there is no such folder (the validation set is then drawn with ``val_size``)."""
    return folder_splits(root, index, image_size, test_size, split_seed)["val_indices"]


def folder_files(split_seed: int, root: str | None = None, index: str | None = None, image_size: int = 32,
                 test_size: float = 0.2) -> dict[str, Any]:
    """The registry's listing for ``data.loader=stream``: :func:`folder_listing` of the options."""
    return folder_listing(root, index, test_size, split_seed)

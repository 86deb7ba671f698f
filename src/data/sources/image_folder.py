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
computed from the files once per process (cached) when the config resolves."""

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
    return torch.stack([a if gray or len(a) == 3 else a.expand(3, -1, -1) for a in arrays]).contiguous(), kept


@functools.lru_cache(maxsize=2)
def load_folder(root: str | None, index: str | None, image_size: int) -> Folder:
    """Every image of a folder (or index), decoded once per process: what the config resolver
    and the DataModule read."""
    check_image_size(image_size)
    kind, path = _where(root, index)
    classes, files = _list_index(path) if kind == "index" else _list_folder(path)
    entries = [(split, file, label) for split, split_files in files.items() for file, label in split_files]
    images, kept = decode_images([file for _, file, _ in entries], image_size, path, LAYOUT)
    splits = {}
    for split in files:
        rows = [row for row, i in enumerate(kept) if entries[i][0] == split]
        if not rows:
            raise DataError(f"{path}: no image of the {split} split could be read; replace its files")
        splits[split] = (images[rows], torch.tensor([entries[kept[row]][2] for row in rows], dtype=torch.long))
    return Folder(tuple(classes), splits)


def _carve(images: torch.Tensor, labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
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


@functools.lru_cache(maxsize=4)
def folder_splits(root: str | None, index: str | None, image_size: int, test_size: float,
                  split_seed: int) -> dict[str, Any]:
    """The training split (with ``val/``'s images last, their indices in ``val_indices``), the test
    split, and the training split's per-channel mean and std."""
    folder = load_folder(root, index, image_size)
    splits = dict(folder.splits)
    if "all" in splits:
        splits["train"] = splits.pop("all")
    if "test" not in splits:
        images, labels = splits["train"]
        kept, carved = _carve(images, labels, test_size, split_seed)
        splits["train"], splits["test"] = (images[kept], labels[kept]), (images[carved], labels[carved])
    train_images, train_labels = splits["train"]
    val_indices = None
    if "val" in splits:
        val_images, val_labels = splits["val"]
        val_indices = list(range(len(train_labels), len(train_labels) + len(val_labels)))
        train_images, train_labels = torch.cat([train_images, val_images]), torch.cat([train_labels, val_labels])
    pixels = train_images.double().div_(255).transpose(0, 1).flatten(1)
    return {"train": (train_images, train_labels), "test": splits["test"], "val_indices": val_indices,
            "class_names": list(folder.class_names), "num_classes": len(folder.class_names),
            "image_shape": [folder.channels, image_size, image_size], "channels": folder.channels,
            "mean": [round(float(m), 4) for m in pixels.mean(1)], "std": [round(max(float(s), 1e-3), 4) for s in pixels.std(1)]}


RESOLVED = ("class_names", "num_classes", "channels", "image_shape", "mean", "std")


def folder_resolver(key: str, root: str | None, index: str | None, image_size: int, test_size: float,
                    split_seed: int) -> Any:
    """``${image_folder:<key>,root,index,image_size,test_size,split_seed}``: one of
    :data:`RESOLVED` computed from the files (cached per folder and settings)."""
    if key not in RESOLVED:
        raise ConfigError(f"${{image_folder:{key},...}}: the key is one of {', '.join(RESOLVED)}")
    return folder_splits(root, index, image_size, test_size, split_seed)[key]


def read_image_folder(data_dir: str, train: bool, *, download: bool, split_seed: int, source: str, root: str | None = None,
                      index: str | None = None, image_size: int = 32, test_size: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The registry's reader: the training split (``val/`` included, last) or the test split."""
    return folder_splits(root, index, image_size, test_size, split_seed)["train" if train else "test"]


def folder_validation(split_seed: int, root: str | None = None, index: str | None = None, image_size: int = 32,
                      test_size: float = 0.2) -> list[int] | None:
    """The indices of the training split that ``val/`` (or the index's val rows) holds; None
    when there is no such folder (the validation set is then drawn with ``val_size``)."""
    return folder_splits(root, index, image_size, test_size, split_seed)["val_indices"]

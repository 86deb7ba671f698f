"""A user's own inputs, for predict.py and serve.py: reading them into rows (an image file, a folder
of images, a JSONL, a text file, stdin) and decoding one image the way a dataset's images are.

Each task's DataModule turns a row into what its test loader serves (:class:`ReadsInputs`); a row
it cannot use raises :class:`InputError`, which is reported in that row while the others go on.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from src.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: what each kind of task reads, for the one-line error about inputs of the wrong kind
KINDS = {
    "image": "an image file, a folder of images, or a JSONL of {\"image\": path} rows",
    "text": "a text file (one article per line), a JSONL of {\"article\": text} rows, or '-' (stdin)",
    "vqa": "a JSONL of {\"image\": path, \"question\": text} rows",
    "labels": "no inputs: num_samples=N (and label=K for a conditional model)",
}
#: the field(s) a row of each kind must have
FIELDS = {"image": ("image",), "text": ("article",), "vqa": ("image", "question"), "labels": ()}


class InputError(ValueError):
    """One input the model cannot take (an unreadable image, an empty article): reported in its
    row of ``predictions.jsonl``, or as a 4xx by serve.py; the other inputs still get answers."""


@runtime_checkable
class ReadsInputs(Protocol):
    """A DataModule that serves a user's rows as its test loader serves its own examples."""

    input_kind: ClassVar[str]

    def prepare_inputs(self) -> None:
        """Whatever encoding needs that the checkpoint does not carry (VQA: the question vocabulary)."""

    def encode(self, row: Mapping[str, Any]) -> Any:
        """One row as one loader item; :class:`InputError` when the row cannot be used."""

    def input_collate(self) -> Callable[[list[Any]], Any]:
        """What turns encoded items into a batch for the task module's ``predict_step``."""


def json_lines(path: Path, where: str) -> list[tuple[int, dict[str, Any]]]:
    """The objects of a JSON Lines file with their line numbers (blank lines skipped); a line that
    is not a JSON object is one line naming ``where:<line>``."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}:{n} is not JSON ({e.msg}); write one JSON object per line") from e
        if not isinstance(row, dict):
            raise DataError(f"{where}:{n} is not a JSON object; write one {{...}} per line")
        rows.append((n, row))
    return rows


def _jsonl(path: Path, kind: str) -> list[dict[str, Any]]:
    rows = [row for _, row in json_lines(path, f"inputs={path}")]
    fields = FIELDS[kind]
    if rows and not any(all(f in row for f in fields) for row in rows):
        raise DataError(f"inputs={path}: no row has the field(s) {', '.join(fields)}; this model takes {KINDS[kind]}")
    for row in rows:  # image paths relative to the JSONL's folder
        if isinstance(row.get("image"), str) and not Path(row["image"]).is_absolute():
            row["image"] = str(path.parent / row["image"])
    return rows


def read_inputs(inputs: str | None, kind: str) -> list[dict[str, Any]]:
    """The rows of ``inputs`` for a task that reads ``kind``; a missing path or inputs of another
    kind (text to a classifier) is one line."""
    if kind == "labels":
        return []
    if not inputs:
        raise DataError(f"predict.py needs inputs=PATH: {KINDS[kind]}")
    if inputs == "-" and kind == "text":
        return [{"article": line.rstrip("\n")} for line in sys.stdin]
    path = Path(inputs)
    if not path.exists():
        raise DataError(f"inputs={inputs} does not exist; give {KINDS[kind]}")
    if path.suffix == ".jsonl":
        return _jsonl(path, kind)
    if kind == "image" and path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"inputs={inputs} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return [{"image": str(p)} for p in files]
    if kind == "image" and path.suffix.lower() in IMAGE_SUFFIXES:
        return [{"image": str(path)}]
    if kind == "text" and path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        return [{"article": line} for line in path.read_text().splitlines()]
    what = "a folder" if path.is_dir() else "an image" if path.suffix.lower() in IMAGE_SUFFIXES else "text"
    raise DataError(f"inputs={inputs} is {what}, but this model takes {KINDS[kind]}")


def field(row: Mapping[str, Any], name: str) -> Any:
    """``row[name]``, or the :class:`InputError` that says it is missing."""
    if row.get(name) is None:
        raise InputError(f"the row has no '{name}'")
    return row[name]


def text_field(row: Mapping[str, Any], name: str) -> str:
    """A non-empty string field of ``row``."""
    value = field(row, name)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"'{name}' is empty" if isinstance(value, str) else f"'{name}' is not text")
    return value


def read_image(source: str | Path | bytes, shape: Sequence[int]) -> torch.Tensor:
    """The image file at ``source`` (or its bytes) as uint8 ``(C, H, W)`` of ``shape``: any mode
    (L, RGB, RGBA, palette) converted to the channels, any size resized (aspect ratio kept) and
    centre-cropped to ``H x W``. A missing, unreadable or truncated file is an :class:`InputError`."""
    channels, height, width = shape
    path = "the image" if isinstance(source, bytes) else source
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as image:
            image = image.convert("L" if channels == 1 else "RGB")
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, TypeError) as e:
        raise InputError(f"{path} is not a readable image ({type(e).__name__})") from None
    tensor = TF.pil_to_tensor(image)
    if tuple(tensor.shape[1:]) != (height, width):
        tensor = v2.Compose([v2.Resize(min(height, width), antialias=True), v2.CenterCrop([height, width])])(tensor)
    return tensor

"""A user's own VQA data: a folder of images and JSON Lines question files ``train.jsonl`` and
optionally ``val.jsonl``, ``test.jsonl``, each row ``{"image": path, "question": ..., "answer": ...}``
(paths relative to the file's folder).

Images are decoded as data=image_folder decodes them (:func:`decode_images`: any size and mode,
resized and centre-cropped to ``image_size``, RGB unless every image is grayscale), each file once
however many questions or splits name it. A missing split is drawn by image with ``split_seed``
(all of an image's questions on one side, as easy-VQA's validation split): ``test_size`` of
train.jsonl's images for testing, ``val_size`` of the rest for validation.

The answers are train.jsonl's, sorted (stable whatever the row order); a val or test question
with another answer is skipped and counted in one warning, as are questions whose image file is
missing or unreadable. A question's type is ``yes_no`` (answer yes or no) or ``other``; only the
types train.jsonl's answers have are kept, so every per-type accuracy has questions to score.

What a config needs before a DataModule reads the files (image shape, vocabulary size, answers,
question types, the training images' mean and std) comes from :func:`vqa_folder_resolver`
(``${vqa_folder:...}``), computed once per process (cached) when the config resolves."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from src.core.errors import ConfigError, DataError, describe
from src.data.sources.easy_vqa import VQASplit, hold_out
from src.data.sources.image_folder import Moments, check_image_size, decode_images
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

SPLITS = ("train", "val", "test")
FIELDS = ("image", "question", "answer")
QUESTION_TYPES = ("yes_no", "other")
LAYOUT = ('train.jsonl (and optionally val.jsonl, test.jsonl) of {"image": "relative/path.png", '
          '"question": "...", "answer": "..."} rows beside the images')

Row = tuple[Path, str, str]


def answer_type(answer: str) -> str:
    """The question type a question with this answer has (one of :data:`QUESTION_TYPES`)."""
    return "yes_no" if answer.strip().lower() in ("yes", "no") else "other"


def _rows(path: Path) -> list[Row]:
    """(image file, question, answer) per row; a row that is not JSON or lacks a field is one line
    naming ``file:line``."""
    from src.data.inputs import json_lines

    try:
        objects = json_lines(path, str(path))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} could not be read ({describe(e)}); fix or replace the file") from e
    rows = []
    for n, row in objects:
        missing = [f for f in FIELDS if row.get(f) is None or not str(row[f]).strip()]
        if missing:
            raise DataError(f"{path}:{n} lacks {', '.join(missing)}; every row needs image, question and answer")
        rows.append((path.parent / str(row["image"]), str(row["question"]), str(row["answer"]).strip()))
    if not rows:
        raise DataError(f"{path} holds no rows; expected {LAYOUT}")
    return rows


@dataclass(frozen=True)
class Decoded:
    """Every image the question files name, decoded once, and each file's rows."""

    images: torch.Tensor
    index: dict[Path, int]  # image file -> row of ``images``
    rows: dict[str, list[Row]]


@functools.lru_cache(maxsize=2)
def _read_folder(root: str | None, image_size: int) -> Decoded:
    check_image_size(image_size)
    if not root:
        raise ConfigError(f"data=vqa_folder needs data.root=DIR: {LAYOUT}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data.root={root} does not exist; point data.root at a folder with {LAYOUT}")
    if not (path / "train.jsonl").is_file():
        raise DataError(f"{path} has no train.jsonl; expected {LAYOUT}")
    rows = {split: _rows(path / f"{split}.jsonl") for split in SPLITS if (path / f"{split}.jsonl").is_file()}
    files = sorted({file for split_rows in rows.values() for file, _, _ in split_rows})
    present = [file for file in files if file.is_file()]
    if len(present) < len(files):
        missing = next(file for file in files if not file.is_file())
        log.warning(f"{path}: {len(files) - len(present)} of the {len(files)} images the question files name do "
                    f"not exist (e.g. {missing}); their questions are skipped")
    if not present:
        raise DataError(f"{path}: none of the {len(files)} images its question files name exist; "
                        "image paths are relative to the JSONL file's folder")
    images, kept = decode_images(present, image_size, path, LAYOUT)
    return Decoded(images, {present[i]: row for row, i in enumerate(kept)}, rows)


def _split(decoded: Decoded, rows: list[Row]) -> VQASplit:
    """The rows whose image was read: each image once (in order of first use), its questions."""
    used: dict[int, int] = {}
    questions, answers, ids = [], [], []
    for file, question, answer in rows:
        if file in decoded.index:
            ids.append(used.setdefault(decoded.index[file], len(used)))
            questions.append(question)
            answers.append(answer)
    return VQASplit(decoded.images[list(used)], questions, answers, torch.tensor(ids, dtype=torch.long))


def _subset(split: VQASplit, rows: torch.Tensor) -> VQASplit:
    """The images ``rows`` of a split, with their questions."""
    keep = torch.isin(split.image_ids, rows).tolist()
    renumber = torch.full((len(split.images),), -1, dtype=torch.long)
    renumber[rows] = torch.arange(len(rows))
    pick = lambda xs: [x for x, k in zip(xs, keep) if k]  # noqa: E731
    return VQASplit(split.images[rows], pick(split.questions), pick(split.answers), renumber[split.image_ids[keep]])


def _concat(a: VQASplit, b: VQASplit) -> VQASplit:
    return VQASplit(torch.cat([a.images, b.images]), a.questions + b.questions, a.answers + b.answers,
                    torch.cat([a.image_ids, b.image_ids + len(a.images)]))


@dataclass(frozen=True)
class VQAFolder:
    """A folder's splits as the DataModule reads them: ``train`` holds the validation images too
    (``val_rows``; val.jsonl's images last), as easy-VQA's training split does."""

    train: VQASplit
    test: VQASplit
    train_rows: torch.Tensor
    val_rows: torch.Tensor
    answers: list[str]
    question_types: list[str]
    resolved: dict[str, Any]


@functools.lru_cache(maxsize=4)
def vqa_folder(root: str | None, image_size: int, test_size: float, val_size: float, split_seed: int) -> VQAFolder:
    """The splits, answers and question types of a folder, and what its config resolves."""
    from src.data.tokenizers import word_level_tokenizer

    decoded = _read_folder(root, image_size)
    where = Path(str(root)).expanduser()
    train = _split(decoded, decoded.rows["train"])
    if not train.questions:
        raise DataError(f"{where}: no image of train.jsonl could be read; expected {LAYOUT}")
    answers = sorted(set(train.answers))
    known = set(answers)
    splits: dict[str, VQASplit] = {}
    unknown: list[str] = []
    for split in ("val", "test"):
        if split in decoded.rows:
            rows = [r for r in decoded.rows[split] if r[2] in known]
            unknown += [f"{a!r} in {split}.jsonl" for _, _, a in decoded.rows[split] if a not in known]
            splits[split] = _split(decoded, rows)
            if not splits[split].questions:
                raise DataError(f"{where}: no question of {split}.jsonl is left (images missing or unreadable, "
                                "or answers train.jsonl never gives); fix the file or remove it to draw the split")
    if unknown:
        log.warning(f"{where}: skipped {len(unknown)} questions whose answer never occurs in train.jsonl "
                    f"(e.g. {unknown[0]}); the answers are train.jsonl's")
    if "test" not in splits:
        kept, carved = hold_out(len(train.images), test_size, split_seed, "data.test_size")
        train, splits["test"] = _subset(train, kept), _subset(train, carved)
    if "val" in splits:
        n = len(train.images)
        train_rows, val_rows = torch.arange(n), torch.arange(n, n + len(splits["val"].images))
        train = _concat(train, splits["val"])
    else:
        train_rows, val_rows = hold_out(len(train.images), val_size, split_seed, "data.val_size")
    fitted = _subset(train, train_rows)
    types = [t for t in QUESTION_TYPES if t in {answer_type(a) for a in fitted.answers}]
    moments = Moments()
    moments.add(fitted.images)
    mean, std = moments.mean_std()
    resolved = {"channels": len(train.images[0]), "vocab_size": word_level_tokenizer(fitted.questions).get_vocab_size(),
                "num_answers": len(answers), "answers": answers, "question_types": types, "mean": mean, "std": std}
    return VQAFolder(train, splits["test"], train_rows, val_rows, answers, types, resolved)


RESOLVED = ("channels", "vocab_size", "num_answers", "answers", "question_types", "mean", "std")


def vqa_folder_resolver(key: str, root: str | None, image_size: int, test_size: float, val_size: float,
                        split_seed: int) -> Any:
    """``${vqa_folder:<key>,root,image_size,test_size,val_size,split_seed}``: one of :data:`RESOLVED`
    computed from the files (cached per folder and settings)."""
    if key not in RESOLVED:
        raise ConfigError(f"${{vqa_folder:{key},...}}: the key is one of {', '.join(RESOLVED)}")
    return vqa_folder(root, image_size, test_size, val_size, split_seed).resolved[key]

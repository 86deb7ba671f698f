"""easy-VQA (Zhou 2019): 64x64 images of one coloured shape, templated questions and 13 answers,
shipped inside the ``easy-vqa`` PyPI package (so it works offline), or read from a local copy."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.io import decode_png, read_file

from src.core.errors import ConfigError, DataError, describe

# Per-channel mean/std of the 4,000 training images (mostly white background).
EASY_VQA_STATS = ((0.9043, 0.9054, 0.8965), (0.1938, 0.1871, 0.2058))


@dataclass(frozen=True)
class VQASplit:
    images: torch.Tensor  # (num_images, channels, size, size) uint8; easy-VQA's are 3x64x64
    questions: list[str]
    answers: list[str]
    image_ids: torch.Tensor  # (num_questions,) row of ``images`` each question asks about


def hold_out(n_images: int, fraction: float, seed: int, option: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (kept, held out) image rows, each sorted: ``fraction`` of ``n_images`` held out, so
    all of an image's questions fall on the same side."""
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))
    n_out = int(round(fraction * n_images))
    if not 0 < n_out < n_images:
        raise ConfigError(f"{option}={fraction} holds out {n_out} of the {n_images} images; pick a fraction that "
                          "leaves both sides some")
    return perm[n_out:].sort().values, perm[:n_out].sort().values


def easy_vqa_root(source: str, data_dir: str) -> Path:
    """The folder with ``answers.txt`` and ``{train,test}/``: the package's copy, a local copy
    in ``${data_dir}/easy-VQA``, or (``auto``) the local copy when there is one."""
    local = Path(data_dir) / "easy-VQA"
    if source == "local" or (source == "auto" and local.is_dir()):
        if not (local / "answers.txt").is_file():
            raise DataError(f"easy-VQA not found in {local} (no answers.txt); put a copy of easy-VQA "
                            "(answers.txt, train/, test/) there or use data.source=package")
        return local
    if source not in ("auto", "package"):
        raise ConfigError(f"data.source={source!r} is not one of auto, package, local (easy-VQA) or folder (data.root)")
    try:
        import easy_vqa
    except ImportError as e:
        raise DataError("the easy-vqa package is not installed; `pip install easy-vqa==1.0` or use data.source=local") from e
    return Path(easy_vqa.__file__).parent / "data"


@functools.lru_cache(maxsize=4)
def load_easy_vqa(root: Path, split: str) -> VQASplit:
    """Decode every PNG of a split once and read its questions."""
    folder = root / split
    try:
        with open(folder / "questions.json") as f:
            rows = json.load(f)
        questions, answers, ids = zip(*((str(q), str(a), int(i)) for q, a, i in rows))
        images = torch.stack([decode_png(read_file(str(folder / "images" / f"{i}.png"))) for i in range(max(ids) + 1)])
    except (OSError, RuntimeError, ValueError, TypeError) as e:
        raise DataError(f"easy-VQA {split} split in {folder} is missing or corrupt ({describe(e)}); "
                        "restore that folder from a fresh copy of easy-VQA or use data.source=package") from e
    return VQASplit(images, list(questions), list(answers), torch.tensor(ids))

"""Reading checkpoints safely: ``weights_only=True`` and clear errors for bad files."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from src.callbacks.run_metadata import KEY
from src.utils.errors import CheckpointError, describe


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a one-line error for a missing, truncated or
    non-checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist; pass the .ckpt file of a run (its checkpoints/ folder)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"ckpt_path={path} is not a readable checkpoint ({describe(e, 160)}); "
                              "it may be truncated or not a Lightning .ckpt") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"ckpt_path={path} has no state_dict; it is not a Lightning checkpoint")
    return ckpt


def check_checkpoint_matches(ckpt: Mapping[str, Any], choices: Mapping[str, str], path: str | Path) -> None:
    """Fail when a checkpoint was trained with other ``model=``/``data=`` options than the ones
    composed now, naming the command that would work."""
    trained = ckpt.get(KEY, {}).get("choices", {})
    wrong = {g: trained[g] for g in ("model", "data") if g in trained and trained[g] != choices.get(g)}
    if wrong:
        fix = " ".join(f"{g}={v}" for g, v in trained.items() if g in ("model", "data"))
        now = " ".join(f"{g}={choices.get(g)}" for g in wrong)
        raise CheckpointError(f"{path} was trained with {fix}, not {now}; run: python eval.py ckpt_path={path} {fix}")

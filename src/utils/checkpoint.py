"""Reading checkpoints safely (``weights_only=True``, clear errors for bad files), upgrading what
archlab stored in checkpoints written before the current format."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from src.callbacks.run_metadata import FORMAT_VERSION, KEY
from src.utils.errors import CheckpointError, describe

# Format 1 -> 2: one name per task (task keys, module and datamodule classes, data configs named
# <dataset>_generation), model=resnet split by what it builds, the scheduler's monitor renamed,
# class names moved into the data's provides block.
_TASKS = {"image_classification": "classification", "image_generation": "generation",
          "visual_question_answering": "vqa", "text_summarization": "summarization"}
_TARGETS = {
    "src.data.classification.ImageClassificationDataModule": "src.data.classification.ClassificationDataModule",
    "src.data.generation.ImageGenerationDataModule": "src.data.generation.GenerationDataModule",
    "src.data.fusion.VQADataModule": "src.data.vqa.VQADataModule",
    "src.models.fusion.VQAModule": "src.models.vqa.VQAModule",
    "src.models.generation.GANModule": "src.models.generation.GenerationModule",
}
_RESNETS = {"src.models.nets.resnet.resnet18": "resnet18", "src.models.nets.resnet.resnet9": "resnet9"}


def _upgrade_v1(meta: dict[str, Any], hparams: dict[str, Any]) -> None:
    model, data, choices = meta["config"]["model"], meta["config"]["data"], meta["choices"]
    model["task"] = _TASKS.get(model.get("task"), model.get("task"))
    data.setdefault("provides", {})["task"] = _TASKS.get(data["provides"].get("task"), data["provides"].get("task"))
    for cfg in (model, data):
        cfg["_target_"] = _TARGETS.get(cfg.get("_target_"), cfg.get("_target_"))
    for cfg in (model, hparams):
        if "monitor" in cfg:
            cfg["scheduler_monitor"] = cfg.pop("monitor")
    if "class_names" in data:
        data["provides"]["class_names"] = data.pop("class_names")
    if choices.get("model") == "resnet":
        choices["model"] = _RESNETS.get(model.get("net", {}).get("_target_"), "resnet18")
    if choices.get("data", "").endswith("_gen"):
        choices["data"] = choices["data"].removesuffix("_gen") + "_generation"


def upgrade(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Bring what archlab stored in ``ckpt`` (and the module's hparams) to the current format, in
    place. State-dict keys are the same in every format."""
    meta = ckpt.get(KEY)
    if meta is None or meta.get("version", 1) >= FORMAT_VERSION:
        return ckpt
    _upgrade_v1(meta, ckpt.setdefault("hyper_parameters", {}))
    meta["version"] = FORMAT_VERSION
    return ckpt


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, upgraded to the current format, with a one-line
    error for a missing, truncated or non-checkpoint file."""
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
    return upgrade(ckpt)


def check_checkpoint_matches(ckpt: Mapping[str, Any], choices: Mapping[str, str], path: str | Path,
                             entry: str = "eval.py") -> None:
    """Fail when a checkpoint was trained with other ``model=``/``data=`` options than the ones
    composed now, naming the command that would work."""
    trained = ckpt.get(KEY, {}).get("choices", {})
    wrong = {g: trained[g] for g in ("model", "data") if g in trained and trained[g] != choices.get(g)}
    if wrong:
        fix = " ".join(f"{g}={v}" for g, v in trained.items() if g in ("model", "data"))
        now = " ".join(f"{g}={choices.get(g)}" for g in wrong)
        raise CheckpointError(f"{path} was trained with {fix}, not {now}; run: python {entry} ckpt_path={path} {fix}")

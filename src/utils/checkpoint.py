"""Reading checkpoints safely (``weights_only=True``, clear errors for bad files), upgrading what
archlab stored in checkpoints written before the current format."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

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
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # tensors read when used
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"ckpt_path={path} is not a readable checkpoint ({describe(e, 160)}); "
                              "it may be truncated or not a Lightning .ckpt") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"ckpt_path={path} has no state_dict; it is not a Lightning checkpoint")
    return upgrade(ckpt)


def check_checkpoint_matches(ckpt: Mapping[str, Any], choices: Mapping[str, str], path: str | Path) -> None:
    """train.py: fail when a checkpoint to resume or test was trained with other ``model=``/
    ``data=`` options than the ones composed now, naming the command that would work."""
    trained = ckpt.get(KEY, {}).get("choices", {})
    _refuse_other_choices(trained, {g: choices.get(g) for g in ("model", "data")}, path,
                          f"python train.py ckpt_path={path} {_trained_with(trained)}")


def _trained_with(trained: Mapping[str, str]) -> str:
    return " ".join(f"{g}={trained[g]}" for g in ("model", "data") if g in trained)


def _refuse_other_choices(trained: Mapping[str, str], chosen: Mapping[str, Any], path: str | Path, command: str) -> None:
    """One line when a ``model=``/``data=`` choice differs from the one the checkpoint records."""
    wrong = {g: v for g, v in chosen.items() if g in trained and trained[g] != v}
    if wrong:
        fix = _trained_with(trained)
        now = " ".join(f"{g}={v}" for g, v in wrong.items())
        raise CheckpointError(f"{path} was trained with {fix}, not {now}; run: {command}")


def _rebase(node: Any, old: str, new: str) -> Any:
    """``node`` with every string under the folder ``old`` moved under ``new``."""
    if isinstance(node, dict):
        return {k: _rebase(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v, old, new) for v in node]
    if isinstance(node, str) and old and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new.rstrip("/") + node[len(old.rstrip("/")):]
    return node


def use_checkpoint_config(cfg: DictConfig, ckpt: Mapping[str, Any], overrides: Sequence[str], path: str | Path) -> dict[str, str]:
    """Make ``cfg.model`` and ``cfg.data`` the ones a checkpoint was trained with, from the resolved
    config it carries, so ``eval.py ckpt_path=X`` alone evaluates what was trained:

    - a ``model=`` or ``data=`` on the command line must name what the checkpoint was trained
      with (one line naming what differs);
    - ``model.*`` and ``data.*`` overrides on the command line apply on top;
    - values under the training machine's ``paths.data_dir`` move under this one's;
    - a distilled student's ``model.distiller`` is dropped (its teacher file is not needed).

    Returns the checkpoint's config choices. A checkpoint without archlab's record (not written by
    archlab) leaves ``cfg`` as composed."""
    meta = ckpt.get(KEY)
    if not meta:
        return {}
    trained, stored = meta.get("choices", {}), meta["config"]
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    chosen = {o.key_or_group: o.value() for o in parsed if o.key_or_group in ("model", "data")}
    _refuse_other_choices(trained, chosen, path, f"python eval.py ckpt_path={path} (the checkpoint knows its model and data)")
    with open_dict(cfg):
        # a distilled student's teacher only shaped its training: evaluation neither needs nor loads it
        cfg.model = OmegaConf.create({k: v for k, v in stored["model"].items() if k != "distiller"})
        cfg.data = OmegaConf.create(_rebase(stored["data"], stored.get("paths", {}).get("data_dir", ""),
                                            str(cfg.paths.data_dir)))
        for o in parsed:
            if o.key_or_group.startswith(("model.", "data.")):
                if o.is_delete():  # as Hydra: the key goes, the constructor's default applies
                    parent, _, leaf = o.key_or_group.rpartition(".")
                    OmegaConf.select(cfg, parent).pop(leaf, None)
                else:
                    OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
    return {**trained}

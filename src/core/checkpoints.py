"""What archlab stores in a checkpoint, and reading it back: the record's key and format, the one
guarded ``torch.load`` (``weights_only=True``, one line for a bad file), the upgrade of older
formats, the net's weights and the net the record describes.

The record (:class:`RunRecord`) is ``checkpoint["archlab"]``: the run's resolved config, its
config-group choices and its loggers' ids, in plain Python types, so a checkpoint describes itself
outside its run folder."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from torch import nn

from src.core.errors import CheckpointError, describe

KEY = "archlab"
#: layout of the record; older checkpoints are upgraded on load (:func:`upgrade`)
FORMAT_VERSION = 3
#: the LightningModule attribute every task module keeps its net under
NET_PREFIX = "net."


@dataclass
class RunRecord:
    """``checkpoint["archlab"]``: what rebuilds the run's model and data, and continues its loggers."""

    config: dict[str, Any]
    choices: dict[str, str] = field(default_factory=dict)
    loggers: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @classmethod
    def of(cls, ckpt: Mapping[str, Any]) -> RunRecord | None:
        """The record of a loaded (upgraded) checkpoint; None for one not written by archlab."""
        meta = ckpt.get(KEY)
        return cls(**meta) if meta else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def task(self) -> str | None:
        return self.config.get("task", {}).get("name")

    def option(self, group: str) -> str:
        """``model=cnn``: the option a group was composed from, else its ``_target_``'s name."""
        target = self.config.get(group, {}).get("_target_", "?")
        return f"{group}={self.choices.get(group) or target.rsplit('.', 1)[-1]}"


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


# Format 2 -> 3: the config split in three (configs/task/, data/, model/). The model config's
# metadata moved to ``task``, each data config lists the tasks it serves, the data configs that
# were (dataset x task) twins are gone (the task comes from the model), and a distilled student's
# teacher settings moved from ``model.distiller`` to ``distill``.
RENAMED_DATA = {
    "digits_generation": "digits", "mnist_generation": "mnist", "fashion_mnist_generation": "fashion_mnist",
    "cifar10_generation": "cifar10", "digits_contrastive": "digits", "fashion_mnist_contrastive": "fashion_mnist",
    "easy_vqa_generation": "easy_vqa_images",
}
TASK_KEYS = ("watch", "search_space", "ddp_find_unused_parameters")


def _upgrade_v2(meta: dict[str, Any]) -> None:
    config, choices = meta["config"], meta["choices"]
    model, provides = config["model"], config["data"].setdefault("provides", {})
    task = config["task"] = {"name": model.pop("task", None)}
    task.update({k: model.pop(k) for k in TASK_KEYS if k in model})
    config["distill"] = model.pop("distiller", None)
    provides["tasks"] = [provides.pop("task", task["name"])]
    if "data" in choices:
        choices["data"] = RENAMED_DATA.get(choices["data"], choices["data"])
    choices["task"] = task["name"]


def upgrade(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Bring the record in ``ckpt`` (and the module's hparams) to the current format, in place.
    State-dict keys are the same in every format."""
    meta = ckpt.get(KEY)
    if meta is None or meta.get("version", 1) >= FORMAT_VERSION:
        return ckpt
    if meta.get("version", 1) < 2:
        _upgrade_v1(meta, ckpt.setdefault("hyper_parameters", {}))
    _upgrade_v2(meta)
    meta["version"] = FORMAT_VERSION
    return ckpt


def read(path: str | Path, option: str = "ckpt_path") -> Any:
    """``torch.load(path, weights_only=True)`` of any file, tensors read when used; a missing or
    unreadable file is one line naming ``option``, the setting that gave the path."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{option}={path} does not exist; pass the .ckpt file of a run (its checkpoints/ folder)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{option}={path} is not a readable checkpoint with weights_only=True "
                              f"({describe(e, 160)}); it may be truncated or not a Lightning .ckpt") from e


def is_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "state_dict" in obj


def load(path: str | Path, option: str = "ckpt_path") -> dict[str, Any]:
    """A Lightning checkpoint, upgraded to the current format."""
    ckpt = read(path, option)
    if not is_checkpoint(ckpt):
        raise CheckpointError(f"{option}={path} has no state_dict; it is not a Lightning checkpoint")
    return upgrade(ckpt)


def record(ckpt: Mapping[str, Any], path: str | Path, option: str) -> RunRecord:
    """The record of ``ckpt``, required: without it the net cannot be rebuilt."""
    found = RunRecord.of(ckpt)
    if found is None:
        raise CheckpointError(f"{option}={path} has no archlab record (not written by train.py), so its net cannot "
                              "be rebuilt; train it with train.py")
    return found


def net_state(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The net's weights of a task module's checkpoint, keys without the ``net.`` prefix."""
    return {k[len(NET_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)}


def build_net(ckpt: Mapping[str, Any], path: str | Path, option: str) -> nn.Module:
    """The net the record describes (``model.net``), with the checkpoint's weights, in eval mode."""
    config = record(ckpt, path, option).config
    net = hydra.utils.instantiate(config["model"]["net"], _convert_="all")
    try:
        net.load_state_dict(net_state(ckpt))
    except RuntimeError as e:
        raise CheckpointError(f"{option}={path}: its weights do not fit the net its config describes "
                              f"({describe(e, 160)})") from e
    return net.eval()

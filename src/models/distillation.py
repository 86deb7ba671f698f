"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):
a student matches a trained teacher's softened class probabilities as well as the labels.

``python train.py model=dense distill=kd distill.teacher_ckpt=<run>/checkpoints/<file>.ckpt``: train.py
hands the :class:`Distiller` to a module that :class:`Distils` (the label tasks), which wraps its
training loss with it; evaluation never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from src.core import checkpoints
from src.core.errors import ConfigError

#: the tasks whose models predict one label per example: what a teacher's soft targets are over
LABEL_TASKS = ("classification", "vqa")


def num_outputs(model_cfg: Mapping[str, Any]) -> int | None:
    """The classes a label task's model config predicts: image classes or VQA answers."""
    if model_cfg.get("num_classes") is not None:
        return int(model_cfg["num_classes"])
    return len(model_cfg["answer_names"]) if model_cfg.get("answer_names") else None


#: a label task's training loss: (logits, labels, the batch's inputs) -> a scalar
LabelLoss = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


@runtime_checkable
class Distils(Protocol):
    """A task module whose training loss a :class:`Distiller` can wrap (the label tasks)."""

    def distil_from(self, distiller: Distiller) -> None: ...


class Distiller:
    """The frozen teacher of an archlab checkpoint and the distillation loss.

    A plain object, not an ``nn.Module``, on purpose: the LightningModule that holds it does not
    register the teacher, so it is in no optimizer, no ``state_dict`` (checkpoints stay the
    student's) and no ``model.train()`` (it stays in eval mode: no dropout, BatchNorm frozen).
    """

    def __init__(self, teacher_ckpt: str | None, temperature: float = 4.0, alpha: float = 0.9,
                 dataset: str | None = None) -> None:
        if not teacher_ckpt:
            raise ConfigError("distill=kd needs a trained teacher: set "
                              "distill.teacher_ckpt=<run>/checkpoints/<file>.ckpt")
        if not temperature > 0:
            raise ConfigError(f"distill.temperature={temperature} must be > 0")
        if not 0 <= alpha <= 1:
            raise ConfigError(f"distill.alpha={alpha} must be in [0, 1] (the weight of the soft targets)")
        self.path, self.temperature, self.alpha = str(teacher_ckpt), float(temperature), float(alpha)
        option = "distill.teacher_ckpt"
        ckpt = checkpoints.load(teacher_ckpt, option)
        record = checkpoints.record(ckpt, teacher_ckpt, option)
        self.config, self.name, self.task = record.config, record.option("model"), record.task
        if self.task not in LABEL_TASKS:
            raise ConfigError(f"the teacher {teacher_ckpt} ({self.name}) is a '{self.task}' model; "
                              f"distillation needs a teacher that predicts labels ({' or '.join(LABEL_TASKS)})")
        taught = self.config.get("data", {}).get("dataset")
        if dataset and taught and taught != dataset:
            raise ConfigError(f"the teacher {teacher_ckpt} was trained on {taught}, the student trains on {dataset}; "
                              "distil from a teacher of the same data")
        self.teacher: nn.Module = checkpoints.build_net(ckpt, teacher_ckpt, option).requires_grad_(False)

    def check_student(self, task: str, classes: int) -> None:
        """The teacher must predict the student's labels: same task, same number of classes."""
        model = self.config["model"]
        if self.task != task:
            raise ConfigError(f"the teacher {self.path} ({self.name}) is a '{self.task}' model, the student a "
                              f"'{task}' one; distil from a teacher of the student's task")
        if num_outputs(model) != classes:
            raise ConfigError(f"the teacher {self.path} ({self.name}) predicts {num_outputs(model)} classes, the student "
                              f"{classes}; distil from a teacher of the same labels")

    def teacher_on(self, like: torch.Tensor) -> nn.Module:
        """The teacher, moved to ``like``'s device and dtype first when they differ: it is not
        registered, so Lightning does not move it with the student (lazily, once)."""
        p = next(self.teacher.parameters(), None)
        if p is not None and (p.device != like.device or p.dtype != like.dtype):
            self.teacher.to(device=like.device, dtype=like.dtype)
        return self.teacher

    def soft_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over examples. T² keeps the
        soft targets' gradients on the scale of the hard ones whatever T (Hinton et al., sec. 2)."""
        t = self.temperature
        log_student = F.log_softmax(student_logits.float() / t, dim=-1)
        log_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
        return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * t * t

    def mix(self, hard_loss: torch.Tensor, soft_loss: torch.Tensor) -> torch.Tensor:
        """alpha · (soft-target loss) + (1 - alpha) · (the labels' cross-entropy, ``hard_loss``)."""
        return self.alpha * soft_loss + (1 - self.alpha) * hard_loss

    def wrap(self, label_loss: LabelLoss, student: nn.Module, logits_of: Callable[[nn.Module, Any], torch.Tensor],
             log: Callable[..., None]) -> LabelLoss:
        """``label_loss`` with the teacher's soft targets mixed in: the teacher is called on the
        student's inputs as the student is (``logits_of``), on the student's device and dtype;
        ``train/loss_hard`` and ``train/loss_kd`` are logged."""
        def distilled(logits: torch.Tensor, target: torch.Tensor, inputs: Any) -> torch.Tensor:
            hard = label_loss(logits, target, inputs)
            with torch.no_grad():
                teacher_logits = logits_of(self.teacher_on(next(student.parameters())), inputs)
            soft = self.soft_loss(logits, teacher_logits)
            log("train/loss_hard", hard, on_step=False, on_epoch=True, batch_size=len(target))
            log("train/loss_kd", soft, on_step=False, on_epoch=True, batch_size=len(target))
            return self.mix(hard, soft)

        return distilled

    def __repr__(self) -> str:
        return f"Distiller(teacher_ckpt={Path(self.path).name}, temperature={self.temperature}, alpha={self.alpha})"

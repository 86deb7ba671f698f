"""LightningModule for visual question answering around an injected image-text fusion net."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from src.models.base import LabelTaskModule, OptimizerFactory, SchedulerFactory
from src.utils.distributed import gather_rows
from src.utils.plots import log_figure, prediction_grid_figure

Batch = dict[str, torch.Tensor]


class VQAModule(LabelTaskModule):
    """Answer classification over all questions of a batch, with accuracy overall and per
    question type (``val/acc``, ``val/acc_shape``, ...), and at test time the errors as a W&B
    table, a JSONL file and a PNG grid in the run dir.

    As in :class:`~src.models.classification.ClassificationModule`, hparams hold plain values
    only, so checkpoints load with ``weights_only=True``, and ``distill=kd`` adds a teacher's soft
    targets to training.
    """

    prediction_key = "question_index"  # rows are per question, a loader item is an image
    task = "vqa"

    def __init__(
        self,
        net: nn.Module,
        answer_names: Sequence[str],
        question_types: Sequence[str],
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        scheduler_monitor: str = "val/loss",
        label_smoothing: float = 0.0,
        compile: bool = False,
        channels_last: bool = False,
        num_plot_images: int = 32,
        max_error_rows: int = 500,
        lr_scales: Mapping[str, float] | None = None,
        train_metrics_every: int = 1,
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval=scheduler_interval,
                         scheduler_monitor=scheduler_monitor, lr_scales=lr_scales, compile=compile,
                         channels_last=channels_last, train_metrics_every=train_metrics_every)
        self.save_hyperparameters(logger=False, ignore=self.IGNORED)
        n = len(answer_names)
        metrics = {"acc": MulticlassAccuracy(n, average="micro")}
        self._stage_metrics(metrics | {f"acc_{t}": MulticlassAccuracy(n, average="micro") for t in question_types})
        self.errors: list[dict[str, Any]] = []

    @property
    def num_labels(self) -> int:
        return len(self.hparams.answer_names)

    def _net_logits(self, net: nn.Module, batch: Batch) -> torch.Tensor:
        return net(*self.net_inputs(batch))

    def net_inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The net's positional inputs in a batch (what compress.py calibrates, exports and times)."""
        return batch["image"], batch["question"], batch["image_index"]

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        target = batch["answer"]
        loss = self._loss(logits, target, batch, stage)
        preds = logits.argmax(dim=1)
        # the mean over questions, not images (a batch holds several questions per image)
        getattr(self, f"{stage}_loss").update(loss, weight=len(target))
        if self._metrics_due(stage):
            metrics = getattr(self, f"{stage}_metrics")
            metrics["acc"].update(preds, target)
            for t, name in enumerate(self.hparams.question_types):
                mask = batch["type"] == t
                if mask.any():
                    metrics[f"acc_{name}"].update(preds[mask], target[mask])
        return loss, logits

    def on_test_epoch_start(self) -> None:
        self.errors = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        if self.test_predictions is not None:  # eval.py asked for them; train.py's test does not pay for them
            self.test_predictions += self._prediction_rows(batch, logits)
        preds = logits.argmax(dim=1)
        for q in (preds != batch["answer"]).nonzero().flatten().tolist():
            if len(self.errors) >= self.hparams.max_error_rows:
                break
            self.errors.append({"image": batch["image"][batch["image_index"][q]].cpu(),
                                "question_index": int(batch["question_index"][q]),
                                "pred": int(preds[q]), "answer": int(batch["answer"][q])})

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.errors = gather_rows(self.errors, self.trainer, key="question_index")[: self.hparams.max_error_rows]
        if not self.trainer.is_global_zero:
            return
        names = self.hparams.answer_names
        questions = getattr(self.trainer.datamodule, "test_questions", None) or []
        text = lambda e: questions[e["question_index"]] if questions else f"question {e['question_index']}"  # noqa: E731
        out = Path(self.trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "test_errors.jsonl", "w") as f:
            for e in self.errors:
                f.write(json.dumps({"question_index": e["question_index"], "question": text(e),
                                    "pred": names[e["pred"]], "answer": names[e["answer"]]}) + "\n")
        shown = self.errors[: self.hparams.num_plot_images]
        if shown:
            fig = prediction_grid_figure(torch.stack([e["image"] for e in shown]), [e["answer"] for e in shown],
                                         [e["pred"] for e in shown], names, captions=[text(e) for e in shown])
            log_figure(self.loggers, "test/errors_grid", fig, out / "test_errors.png")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                rows = [[wandb.Image(self._display(e["image"])), text(e), names[e["pred"]], names[e["answer"]]]
                        for e in self.errors]
                logger.log_table("test/errors", columns=["image", "question", "prediction", "answer"], data=rows)

    def _display(self, image: torch.Tensor) -> torch.Tensor:
        """A normalised image rescaled to [0, 1] for display."""
        return (image - image.min()) / (image.max() - image.min()).clamp(min=1e-8)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        """predict.py: each question's ``answer``, its ``confidence`` and the ``top_k`` answers."""
        return self._answer_rows(self(batch), self.hparams.answer_names, key="answer")

    def _prediction_rows(self, batch: Batch, logits: torch.Tensor) -> list[dict[str, Any]]:
        conf, preds = logits.softmax(dim=1).max(dim=1)
        names, types = self.hparams.answer_names, self.hparams.question_types
        return [
            {"question_index": int(q), "type": types[t], "answer": names[a], "pred": names[p], "confidence": round(float(c), 6)}
            for q, t, a, p, c in zip(batch["question_index"].tolist(), batch["type"].tolist(), batch["answer"].tolist(),
                                     preds.tolist(), conf.tolist())
        ]

"""LightningModule for image classification around any injected ``nn.Module``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from src.models.base import LabelTaskModule, OptimizerFactory, SchedulerFactory
from src.utils.plots import log_figure, prediction_grid_figure
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class ClassificationModule(LabelTaskModule):
    """Cross-entropy training with accuracy and macro-F1 per stage, best-val tracking, and a
    confusion matrix plus a grid of predictions at test time.

    Only plain values go into ``hparams``, so checkpoints load with ``torch.load(weights_only=True)``;
    ``load_from_checkpoint`` needs the net passed in, e.g.
    ``ClassificationModule.load_from_checkpoint(path, net=SimpleCNN(...))``. With ``distill=kd``
    training also matches a teacher's soft targets (:meth:`distil_from`); ``lr_scales`` gives modules of
    the net their own learning rates (``{features: 0.1}``: a pre-trained backbone learns slowly).
    """

    task = "classification"

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val/loss",
        label_smoothing: float = 0.0,
        class_names: Sequence[str] | None = None,
        compile: bool = False,
        channels_last: bool = False,
        num_plot_images: int = 32,
        lr_scales: Mapping[str, float] | None = None,
        train_metrics_every: int = 1,
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval=scheduler_interval,
                         scheduler_monitor=scheduler_monitor, lr_scales=lr_scales, compile=compile,
                         channels_last=channels_last, train_metrics_every=train_metrics_every)
        self.save_hyperparameters(logger=False, ignore=self.IGNORED)
        self._stage_metrics({"acc": MulticlassAccuracy(num_classes, average="micro"),
                             "f1": MulticlassF1Score(num_classes, average="macro")})
        self.confusion = MulticlassConfusionMatrix(num_classes, normalize="true")  # rows: recall of each class
        self.plot_batch: dict[str, torch.Tensor] = {}

    @property
    def num_labels(self) -> int:
        return self.hparams.num_classes

    def _net_logits(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net(x)

    def net_inputs(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The net's positional inputs in a batch (what compress.py calibrates, exports and times)."""
        return (batch[0],)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y, x, stage)
        self._log_stage(stage, loss, logits.argmax(dim=1), y)
        return loss, logits

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        self.confusion.update(logits.argmax(dim=1), batch[1])
        if self.test_predictions is not None:  # eval.py asked for them; train.py's test does not pay for them
            self.test_predictions += self._prediction_rows(batch[1], logits)
        if batch_idx == 0:
            n = self.hparams.num_plot_images
            self.plot_batch = {"images": batch[0][:n].cpu(), "targets": batch[1][:n].cpu(), "preds": logits[:n].argmax(1).cpu()}

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        matrix = self.confusion.compute().cpu()
        self.confusion.reset()
        names = self.hparams.class_names or [str(i) for i in range(self.hparams.num_classes)]
        predicted, present = matrix.sum(dim=0).nonzero().flatten(), int((matrix.sum(dim=1) > 0).sum())
        if len(predicted) == 1 and present > 1:  # a finished run whose metrics are a class's share
            log.warning(f"Every test prediction is class {names[int(predicted[0])]!r} though the test set holds "
                        f"{present} classes: the model collapsed to a constant output; look at train/loss and lower "
                        "the learning rate (model.optimizer.lr)")
        if not self.trainer.is_global_zero:
            return
        out = Path(self.trainer.default_root_dir)
        n = len(names)
        fig = Figure(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), layout="constrained")
        self.confusion.plot(val=matrix, ax=fig.add_subplot(), labels=list(names))
        log_figure(self.loggers, "test/confusion_matrix", fig, out / "confusion_matrix.png")
        if self.plot_batch:
            fig = prediction_grid_figure(**self.plot_batch, class_names=names)
            log_figure(self.loggers, "test/predictions", fig, out / "test_predictions.png")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        """predict.py: the images' labels (``label``, class ``name``, ``confidence``, ``top_k``)."""
        return self._answer_rows(self(batch[0]), self.hparams.class_names)

    def _prediction_rows(self, y: torch.Tensor, logits: torch.Tensor) -> list[dict[str, Any]]:
        conf, preds = logits.softmax(dim=1).max(dim=1)
        return [
            {"target": int(t), "pred": int(p), "confidence": round(float(c), 6)}
            for t, p, c in zip(y.tolist(), preds.tolist(), conf.tolist())
        ]

"""LightningModule for image classification around any injected ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import ConfusionMatrix, MaxMetric, MeanMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from src.models.optim import build_optimizers
from src.utils.plots import confusion_matrix_figure, log_figure, prediction_grid_figure


class ClassifierModule(LightningModule):
    """What the classifiers of this template share (image classification, VQA answers):
    per-stage metric collections and mean losses, the best validation accuracy so far
    (``val/acc_best``, for sweeps), channels-last and ``torch.compile`` of the net, and the
    optimizer set-up. Subclasses call :meth:`_stage_metrics` and give ``_step(batch, stage)``."""

    def _stage_metrics(self, metrics: dict[str, Metric]) -> None:
        """``{train,val,test}_metrics`` (names prefixed ``stage/``) and ``{train,val,test}_loss``."""
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        # Persistent: part of the state_dict, so a resumed run remembers its best epoch so far.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)

    def _step(self, batch: Any, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits of a batch, with the stage's loss and metrics updated and logged."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        # NHWC convolutions are ~1.7x faster on CPU (oneDNN) and on tensor cores.
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        # nn.Module.compile() compiles forward in place: the state_dict keys stay the same, so
        # checkpoints of compiled runs load into uncompiled nets and vice versa.
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a few batches of an untrained net are no "best epoch"
            return
        self.val_acc_best(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        return build_optimizers(self, self.optimizer_factory, self.scheduler_factory,
                                self.hparams.scheduler_interval, self.hparams.monitor)


class ClassificationModule(ClassifierModule):
    """Cross-entropy training with accuracy and macro-F1 per stage, best-val tracking, and a
    confusion matrix plus a grid of predictions at test time.

    Only plain values go into ``hparams`` (the net and the optimizer factories are ignored), so
    checkpoints load with ``torch.load(weights_only=True)``; ``load_from_checkpoint`` needs the
    net passed in, e.g. ``ClassificationModule.load_from_checkpoint(path, net=SimpleCNN(...))``.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/loss",
        label_smoothing: float = 0.0,
        class_names: Sequence[str] | None = None,
        compile: bool = False,
        channels_last: bool = False,
        num_plot_images: int = 32,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self._stage_metrics({"acc": MulticlassAccuracy(num_classes, average="micro"),
                             "f1": MulticlassF1Score(num_classes, average="macro")})
        self.confusion = ConfusionMatrix(task="multiclass", num_classes=num_classes)
        self.plot_batch: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing if stage == "train" else 0.0)
        preds = logits.argmax(dim=1)
        mean_loss, metrics = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_metrics")
        # update(), not forward(): nothing is logged per step, so skip the per-batch compute.
        mean_loss.update(loss)
        metrics.update(preds, y)
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return loss, logits

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, logits = self._step(batch, "test")
        self.confusion(logits.argmax(dim=1), batch[1])
        if batch_idx == 0:
            n = self.hparams.num_plot_images
            self.plot_batch = {"images": batch[0][:n].cpu(), "targets": batch[1][:n].cpu(), "preds": logits[:n].argmax(1).cpu()}

    def on_test_epoch_end(self) -> None:
        matrix = self.confusion.compute().cpu()
        self.confusion.reset()
        if not self.trainer.is_global_zero:
            return
        names = self.hparams.class_names or [str(i) for i in range(self.hparams.num_classes)]
        out = Path(self.trainer.default_root_dir)
        log_figure(self.loggers, "test/confusion_matrix", confusion_matrix_figure(matrix, names), out / "confusion_matrix.png")
        if self.plot_batch:
            fig = prediction_grid_figure(**self.plot_batch, class_names=names)
            log_figure(self.loggers, "test/predictions", fig, out / "test_predictions.png")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        x, y = batch
        probs = self(x).softmax(dim=1)
        conf, preds = probs.max(dim=1)
        return [
            {"target": int(t), "pred": int(p), "confidence": round(float(c), 6)}
            for t, p, c in zip(y.tolist(), preds.tolist(), conf.tolist())
        ]

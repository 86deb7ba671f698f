"""LightningModule for image regression around any injected ``nn.Module`` with one output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection, MinMetric
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from src.models.base import OptimizerFactory, SchedulerFactory, TaskModule


class RegressionModule(TaskModule):
    """Mean-squared-error training of a net's single output against a real target, scaled by
    ``target_scale`` so the net works near unit range (an angle in degrees / 45); per stage the
    mean absolute error, RMSE and R² in the target's own unit, and the best validation MAE so far.

    Hparams hold plain values only, so checkpoints load with ``weights_only=True``."""

    def __init__(
        self,
        net: nn.Module,
        target_scale: float = 1.0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        scheduler_monitor: str = "val/loss",
        compile: bool = False,
        channels_last: bool = False,
        lr_scales: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval=scheduler_interval,
                         scheduler_monitor=scheduler_monitor, lr_scales=lr_scales, compile=compile,
                         channels_last=channels_last)
        self.save_hyperparameters(logger=False, ignore=self.IGNORED)
        metrics = MetricCollection({"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score()})
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", metrics.clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_mae_best = MinMetric()
        self.val_mae_best.persistent(True)  # a resumed run remembers its best epoch so far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction in the target's unit."""
        return self.net(x).squeeze(-1).float() * self.hparams.target_scale

    def net_inputs(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The net's positional inputs in a batch (what compress.py calibrates, exports and times)."""
        return (batch[0],)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        pred = self(x)
        scale = self.hparams.target_scale
        loss = F.mse_loss(pred / scale, y.float() / scale)
        mean_loss, metrics = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_metrics")
        mean_loss.update(loss)
        metrics.update(pred, y.float())
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return loss, pred

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a few batches of an untrained net are no "best epoch"
            return
        self.val_mae_best(self.val_metrics["mae"].compute())
        self.log("val/mae_best", self.val_mae_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, pred = self._step(batch, "test")
        if self.test_predictions is not None:  # eval.py asked for them; train.py's test does not pay for them
            self.test_predictions += [{"target": round(float(t), 4), "pred": round(float(p), 4)}
                                      for t, p in zip(batch[1].tolist(), pred.tolist())]

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        """predict.py: each image's predicted ``value``, in the target's unit."""
        return [{"value": round(float(p), 4)} for p in self(batch[0]).tolist()]

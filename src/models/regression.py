"""LightningModule for image regression around any injected ``nn.Module`` with one output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from src.models.base import OptimizerFactory, SchedulerFactory, StagedTaskModule


class RegressionModule(StagedTaskModule):
    """Mean-squared-error training of a net's single output against a real target, scaled by
    ``target_scale`` so the net works near unit range (an angle in degrees / 45); per stage the
    mean absolute error, RMSE and R² in the target's own unit, and the best validation MAE so far.

    Hparams hold plain values only, so checkpoints load with ``weights_only=True``."""

    best_metric = ("mae", "min")

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
        train_metrics_every: int = 1,
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval=scheduler_interval,
                         scheduler_monitor=scheduler_monitor, lr_scales=lr_scales, compile=compile,
                         channels_last=channels_last, train_metrics_every=train_metrics_every)
        self.save_hyperparameters(logger=False, ignore=self.IGNORED)
        self._stage_metrics({"mae": MeanAbsoluteError(), "rmse": MeanSquaredError(squared=False), "r2": R2Score()})

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
        self._log_stage(stage, loss, pred, y.float())
        return loss, pred

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        _, pred = self._step(batch, "test")
        if self.test_predictions is not None:  # eval.py asked for them; train.py's test does not pay for them
            self.test_predictions += [{"target": round(float(t), 4), "pred": round(float(p), 4)}
                                      for t, p in zip(batch[1].tolist(), pred.tolist())]

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        """predict.py: each image's predicted ``value``, in the target's unit."""
        return [{"value": round(float(p), 4)} for p in self(batch[0]).tolist()]

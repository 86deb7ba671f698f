"""Optimizer and scheduler wiring shared by every task's LightningModule."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningModule

from src.utils.errors import ConfigError


def build_optimizers(
    module: LightningModule,
    optimizer: Callable[..., torch.optim.Optimizer] | None,
    scheduler: Callable[..., Any] | None,
    interval: str = "epoch",
    monitor: str = "val/loss",
) -> Any:
    """Call the ``_partial_`` optimizer (and scheduler) from the model config.

    A scheduler whose signature takes ``total_steps`` (OneCycleLR) and does not set it gets the
    trainer's estimate, so one config serves any dataset size, batch size or device count.
    """
    if optimizer is None:
        raise ConfigError("the model config has no optimizer; set model.optimizer (a _partial_ torch.optim class)")
    opt = optimizer(params=module.trainer.model.parameters())
    if scheduler is None:
        return opt
    kwargs = {}
    func = getattr(scheduler, "func", scheduler)
    if "total_steps" in inspect.signature(func).parameters and "total_steps" not in getattr(scheduler, "keywords", {}):
        kwargs["total_steps"] = int(module.trainer.estimated_stepping_batches)
    sched = scheduler(optimizer=opt, **kwargs)
    # "name" is what LearningRateMonitor logs under: train/lr, per the stage/name convention.
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval, "monitor": monitor, "name": "train/lr"}}

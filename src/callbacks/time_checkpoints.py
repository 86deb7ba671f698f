"""Checkpoints at marks of training wall time, to compare models at equal compute."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from src.core.errors import ConfigError


class TimeCheckpoints(Callback):
    """Saves ``minute_<m>.ckpt`` in ``dirpath`` after the first training batch that ends at least
    ``m`` minutes after training started, for each ``m`` in ``minutes``. The clock is the one
    ``trainer.max_time`` stops on (training start, validation and checkpointing included), so
    ``minute_5.ckpt`` is the state a 5-minute budget would have ended with, while the run goes on
    to convergence; ``eval.py ckpt_path=...`` tests it (benchmarks/gan_quality.py --equal-time).
    Written the same way under automatic and manual optimization (GANs), on every rank in DDP."""

    def __init__(self, minutes: Sequence[float], dirpath: str) -> None:
        if not minutes or any(m <= 0 for m in minutes):
            raise ConfigError(f"callbacks.time_checkpoints.minutes={list(minutes)} must be one or more minutes > 0")
        self.marks = sorted(float(m) for m in minutes)
        self.dirpath = Path(dirpath)
        self._start = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        if not self.marks:
            return
        # rank 0's clock decides, so every rank saves the same checkpoint together
        if not trainer.strategy.broadcast((time.monotonic() - self._start) / 60 >= self.marks[0]):
            return
        mark = self.marks.pop(0)
        trainer.save_checkpoint(self.dirpath / f"minute_{mark:g}.ckpt")

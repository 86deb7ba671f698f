"""Wall time of each training epoch (validation included), logged as ``train/epoch_time_s``."""

import time

from lightning import Callback, LightningModule, Trainer


class EpochTimer(Callback):
    """Lands in every logger (``metrics.csv`` too), which is how ``benchmarks/overhead.py``
    compares train.py with a bare PyTorch loop."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log("train/epoch_time_s", time.perf_counter() - self._start, on_epoch=True, on_step=False)

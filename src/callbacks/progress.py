"""A progress bar that shows what a researcher watches, on one line."""

import time
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar


class WatchedProgressBar(RichProgressBar):
    """Rich progress bar with the training loss(es), the watched metric and its best so far, and
    nothing else: no ``v_num``, no per-class or secondary metrics that wrap over lines. The best
    is the one checkpointing keeps, so it survives a resume."""

    def __init__(self, metric: str, min_interval: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric, self.min_interval = metric, min_interval
        self._drawn = 0.0

    def _redraw_due(self, batch_idx: int, total: float) -> bool:
        """Lightning's rich bar recomputes its metrics and redraws the whole display after every
        batch (its ``refresh_rate`` aside), a cost on every step: here at most every
        ``min_interval`` seconds, and after a loop's last batch, so the bar ends full. Callers ask
        only where the bar is shown (not on other DDP ranks, whose loop totals are unset)."""
        now = time.monotonic()
        if batch_idx + 1 >= total or now - self._drawn >= self.min_interval:
            self._drawn = now
            return True
        return False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.is_enabled and self._redraw_due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.is_enabled and self._redraw_due(batch_idx, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.is_enabled and self._redraw_due(batch_idx, self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.is_enabled and self._redraw_due(batch_idx, self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        logged = trainer.callback_metrics
        shown: dict[str, Any] = {}
        for key in sorted(logged):  # train/loss, or a GAN's train/d_loss and train/g_loss
            name = key.removeprefix("train/").removesuffix("_step")
            if key.startswith("train/") and name.endswith("loss") and not key.endswith("_epoch"):
                shown[name] = logged[key].item()
        if self.metric in logged:
            shown[self.metric] = logged[self.metric].item()
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.monitor == self.metric and checkpoint.best_model_score is not None:
            shown["best"] = checkpoint.best_model_score.item()
        return shown

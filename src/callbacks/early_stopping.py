"""Lightning's EarlyStopping, with a watched metric that is never logged as one line."""

from __future__ import annotations

from lightning import Trainer
from lightning.pytorch.callbacks import early_stopping

from src.core.errors import ConfigError


class EarlyStopping(early_stopping.EarlyStopping):
    """Lightning raises a RuntimeError (a traceback) when the watched metric is missing; this says
    why it is missing and what to change. Same class name, so its state in checkpoints of the
    Lightning class is restored on resume."""

    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        if self.strict and self.monitor not in trainer.callback_metrics and not trainer.fast_dev_run:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
            if sum(trainer.num_val_batches) == 0:
                raise ConfigError(f"early stopping watches {self.monitor}, which validation logs, and validation ran no "
                                  "batch (trainer.limit_val_batches=0 or an empty validation split); validate, or "
                                  "train without early stopping: callbacks.early_stopping=null")
            raise ConfigError(f"early stopping watches {self.monitor}, which was never logged (logged: {logged}); set "
                              "task.watch.metric (or callbacks.early_stopping.monitor) to a logged metric")
        super()._run_early_stopping_check(trainer)

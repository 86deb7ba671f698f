"""Stores the run's record (src/core/checkpoints.py) in every checkpoint."""

from typing import Any

from lightning import Callback, LightningModule, Trainer

from src.core.checkpoints import KEY, RunRecord


class RunMetadata(Callback):
    """``checkpoint["archlab"]``: the resolved config, the model/data choices and the loggers' ids in
    plain Python types (loads with ``weights_only=True``), so ``eval.py`` can tell which
    ``model=``/``data=`` a checkpoint needs, a checkpoint stays self-describing outside its run
    folder, and a resumed run continues its loggers' runs (names, W&B id, TensorBoard version)."""

    def __init__(self, config: dict[str, Any], choices: dict[str, str]) -> None:
        self.config, self.choices = config, choices

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        loggers = {type(logger).__name__: logger.version for logger in trainer.loggers if logger.version is not None}
        checkpoint[KEY] = RunRecord(self.config, self.choices, loggers).as_dict()

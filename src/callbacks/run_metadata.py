"""Stores the run's resolved config and its model/data choices in every checkpoint."""

from typing import Any

from lightning import Callback, LightningModule, Trainer

KEY = "archlab"
#: layout of what archlab stores; older checkpoints are upgraded on load (src/utils/checkpoint.py)
FORMAT_VERSION = 2


class RunMetadata(Callback):
    """``checkpoint["archlab"] = {"config": ..., "choices": ..., "loggers": ...}`` in plain Python
    types (loads with ``weights_only=True``), so ``eval.py`` can tell which ``model=``/``data=`` a
    checkpoint needs, a checkpoint stays self-describing outside its run folder, and a resumed
    run continues its loggers' runs (names, W&B id, TensorBoard version: src/utils/tracking.py)."""

    def __init__(self, config: dict[str, Any], choices: dict[str, str]) -> None:
        self.config, self.choices = config, choices

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        loggers = {type(logger).__name__: logger.version for logger in trainer.loggers if logger.version is not None}
        checkpoint[KEY] = {"version": FORMAT_VERSION, "config": self.config, "choices": self.choices, "loggers": loggers}

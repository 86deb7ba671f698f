"""Best and last checkpoints as W&B model artifacts."""

from pathlib import Path

import wandb
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn


class WandbCheckpoints(Callback):
    """At the end of training, log the best checkpoint (alias ``best``) and the last one (alias
    ``last``) as versions of the artifact ``model-<run id>`` (W&B adds ``latest`` to the newest
    version itself). Lightning's own ``WandbLogger(log_model=True)`` would tag archlab's
    ``last.ckpt`` as ``best`` too, since the callback that writes it keeps one unmonitored
    checkpoint."""

    @rank_zero_only
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            rank_zero_warn("callbacks.wandb_checkpoints needs logger=wandb (or many); no artifact logged")
            return
        aliases: dict[str, list[str]] = {}
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            if callback.monitor is not None and callback.best_model_path:
                aliases.setdefault(callback.best_model_path, []).append("best")
            last = callback.last_model_path or (callback.best_model_path if callback.monitor is None else "")
            if last:
                aliases.setdefault(last, []).append("last")
        for logger in loggers:
            for path, names in aliases.items():
                artifact = wandb.Artifact(f"model-{logger.experiment.id}", type="model",
                                          metadata={"original_filename": Path(path).name})
                artifact.add_file(path, name="model.ckpt")
                logger.experiment.log_artifact(artifact, aliases=sorted(set(names)))

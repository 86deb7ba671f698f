"""A progress bar that shows what a researcher watches, on one line."""

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar


class WatchedProgressBar(RichProgressBar):
    """Rich progress bar with the training loss(es), the watched metric and its best so far, and
    nothing else: no ``v_num``, no per-class or secondary metrics that wrap over lines. The best
    is the one checkpointing keeps, so it survives a resume."""

    def __init__(self, metric: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metric = metric

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

"""Saves ``last.ckpt`` when a run is stopped from outside, so its resume loses at most a step."""

from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class SaveOnPreemption(Callback):
    """Writes ``path`` (the run's ``last.ckpt``) when training is stopped by SIGTERM (Lightning
    finishes the current step, then raises ``SIGTERMException``: a local ``kill``, SLURM preempting
    a job) or by submitit's requeue-and-exit before a SLURM time limit. The requeued or re-run job
    resumes from it (src/utils/sweep_resume.py); a run that fails on its own saves nothing.

    A SIGTERM during the fit's validation takes effect when that validation ends: Lightning would
    stop after the current validation batch, and a resume from there skips the rest of it (it takes
    the checkpoint for one saved after validation), leaving the epoch without the val metric that
    early stopping and the best checkpoint watch. Stopped on an epoch's last step, the run thus
    validates and ends that epoch first, and resumes from its end."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._deferred = False

    def _fitting(self, trainer: Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._fitting(trainer) and trainer.received_sigterm:
            # Lightning's evaluation loop reads this flag right after this hook; no public switch exists
            trainer._signal_connector.received_sigterm, self._deferred = False, True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._deferred:
            trainer._signal_connector.received_sigterm, self._deferred = True, False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SystemExit) or not self._fitting(trainer):
            return
        trainer.save_checkpoint(self.path)
        log.info(f"Stopped at step {trainer.global_step} ({type(exception).__name__}); saved {self.path}")

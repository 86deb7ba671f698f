"""Saves ``last.ckpt`` when a run is stopped from outside, so its resume loses at most a step."""

from pathlib import Path

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class SaveOnPreemption(Callback):
    """Writes ``path`` (the run's ``last.ckpt``) when training is stopped by SIGTERM (Lightning
    finishes the current step, then raises ``SIGTERMException``: a local ``kill``, SLURM preempting
    a job) or by submitit's requeue-and-exit before a SLURM time limit. The requeued or re-run job
    resumes from it (src/utils/sweep_resume.py); a run that fails on its own saves nothing."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SystemExit) or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path)
        log.info(f"Stopped at step {trainer.global_step} ({type(exception).__name__}); saved {self.path}")

"""Hydra's basic and Optuna sweepers, resumable (src/utils/sweep_resume.py): a plugin package,
since Hydra instantiates sweepers from ``hydra_plugins`` only."""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

from src.utils.sweep_resume import SkipFinished


class ResumableBasicSweeper(BasicSweeper):
    """Hydra's grid sweeper; re-run in its sweep folder, it launches the unfinished jobs only."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = SkipFinished(self.launcher, config.hydra.sweep.dir)


class ResumableOptunaSweeper(OptunaSweeper):
    """Hydra's Optuna sweeper; re-run in its sweep folder, its seeded sampler asks for the same
    trials again: the finished ones are re-told from their folders, the interrupted one resumes
    from its last.ckpt, the rest run."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweeper.launcher = SkipFinished(self.sweeper.launcher, config.hydra.sweep.dir)

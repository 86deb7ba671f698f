"""Sweeps that survive: re-running a sweep's command with ``hydra.sweep.dir=<that sweep>`` runs only
its unfinished work.

- a job whose folder holds ``summary.json`` finished: it is not launched again, its folder is left
  as it is, and its result is handed back to the sweeper (Optuna re-tells it to its study, which
  its seeded sampler rebuilds trial by trial: Optuna 2.10's SQLite storage does not work with
  SQLAlchemy 2);
- a job whose folder holds ``checkpoints/last.ckpt`` (killed, preempted, requeued by SLURM)
  resumes from it in its own folder (its names, W&B run, loops and RNG continue);
- any other job runs from the start.

The sweepers that do this (``hydra_plugins/archlab_sweepers``) wrap Hydra's basic and Optuna
sweepers; Hydra instantiates sweepers from the ``hydra_plugins`` package only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from src.core.errors import ConfigError
from src.utils.pylogger import RankedLogger
from src.utils.run_names import is_multirun, refuse

log = RankedLogger(__name__)

#: written when a run ends (src/utils/tracking.py): a job folder holding it is finished
SUMMARY = "summary.json"
#: what a job resumes from (configs/callbacks/last_checkpoint.yaml, configs/callbacks/preemption.yaml)
LAST = Path("checkpoints") / "last.ckpt"


def job_dir(sweep_dir: str | Path, num: int) -> Path:
    """The folder of job ``num`` (``hydra.sweep.subdir`` is ``${hydra.job.num}``)."""
    return Path(sweep_dir) / str(num)


def finished_value(job: Path) -> float | None:
    """What a finished job returned to its sweeper: its ``optimized_metric`` as ``summary.json``
    holds it (the best score checkpointing kept, as train.py returns it, else the logged value)."""
    summary = json.loads((job / SUMMARY).read_text())
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    name = OmegaConf.select(config, "optimized_metric", default=None, throw_on_resolution_failure=False)
    if not name:
        return None
    value = summary.get(f"best/{name}", summary.get(name))
    return None if value is None else float(value)


class SkipFinished(Launcher):
    """A launcher around the configured one (basic, submitit): finished jobs are answered from
    their folders; the others are launched with their own job numbers, so each lands in its own
    folder again."""

    def __init__(self, launcher: Launcher, sweep_dir: str) -> None:
        self.launcher, self.sweep_dir = launcher, sweep_dir

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns: list[JobReturn | None] = []
        pending: list[int] = []  # consecutive jobs to launch together (a submitit array)

        def flush() -> None:
            if pending:
                returns[pending[0]:] = self.launcher.launch([job_overrides[i] for i in pending], initial_job_idx + pending[0])
                pending.clear()

        for i, overrides in enumerate(job_overrides):
            job = job_dir(self.sweep_dir, initial_job_idx + i)
            if (job / SUMMARY).exists():
                flush()
                _check_same_job(job, overrides)
                log.info(f"#{initial_job_idx + i} finished before; kept as it is: {job}")
                returns.append(JobReturn(overrides=list(overrides), working_dir=str(job), task_name="train",
                                         status=JobStatus.COMPLETED, _return_value=finished_value(job)))
            else:
                pending.append(i)
                returns.append(None)
        flush()
        return returns  # type: ignore[return-value]


def _check_same_job(job: Path, overrides: Sequence[str]) -> None:
    """A finished job answers for the job the sweeper asks for only if it ran the same overrides
    (an unseeded Optuna sampler would ask for other trials)."""
    ran = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    if sorted(ran) != sorted(map(str, overrides)):
        refuse(ConfigError(f"{job} ran {' '.join(ran)}, but the resumed sweep asks for {' '.join(overrides)} there; "
                           "a sweep resumes when it asks for the same jobs (Optuna: a seeded sampler, "
                           "hydra.sweeper.sampler.seed=...)"))


def resume_job(cfg: DictConfig) -> None:
    """A sweep job (re-launched by a resumed sweep, or requeued by SLURM) whose folder holds
    ``checkpoints/last.ckpt`` continues from it, unless ``ckpt_path`` is given."""
    if not is_multirun() or cfg.get("ckpt_path") or not cfg.get("train"):
        return
    last = Path(cfg.paths.output_dir) / LAST
    if last.exists():
        log.info(f"Resuming this sweep job from {last}")
        with open_dict(cfg):
            cfg.ckpt_path = str(last)

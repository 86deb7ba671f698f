"""What every entry point does around its task: error reporting, clean-up between multirun jobs,
hyper-parameter logging, and reading the optimized metric."""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.utils.config import print_config_tree
from src.utils.errors import ConfigError, UserError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def task_wrapper(task_func: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a task so that a user error prints one line, not a traceback (unless
    ``HYDRA_FULL_ERROR=1``), and so that each job leaves the process as it found it: in a
    multirun the next job runs in this same process. W&B and torch.distributed are closed, and
    the environment is restored, since Lightning's DDP launcher sets ``LOCAL_RANK`` & co. there,
    which would make the next job believe its ranks were started by an external launcher."""

    @functools.wraps(task_func)
    def wrap(cfg: DictConfig) -> Any:
        environ = dict(os.environ)
        try:
            return task_func(cfg)
        except UserError as e:
            # In a sweep, re-raise so the sweeper marks just this job as failed.
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or is_multirun():
                raise
            log.error(f"{type(e).__name__}: {e}")
            raise SystemExit(1) from None
        except Exception:
            log.exception("Run failed; the traceback is also in the run's log file")
            raise
        finally:
            log.info(f"Output dir: {cfg.paths.output_dir}")
            if "wandb" in sys.modules:
                import wandb

                if wandb.run is not None:
                    wandb.finish()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
            os.environ.clear()
            os.environ.update(environ)

    return wrap


def quiet_non_zero_ranks() -> None:
    """DDP ranks other than 0 keep only warnings and errors, so each line prints once."""
    if rank_zero_only.rank != 0:
        warnings.filterwarnings("ignore")
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)


def extras(cfg: DictConfig) -> None:
    """Optional start-of-run utilities, switched in ``configs/extras``."""
    if not cfg.get("extras"):
        return
    if cfg.extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if cfg.extras.get("print_config"):
        print_config_tree(cfg, save_dir=cfg.paths.output_dir)


def pin_ddp_relaunch_to_this_job() -> None:
    """Lightning starts DDP ranks 1..N by re-running ``sys.argv`` with ``hydra.run.dir`` taken
    from the Hydra config. In a multirun, argv holds the whole sweep (``-m a=1,2``) and
    ``run.dir`` is not the job's folder, so each rank would start a sweep of its own in new
    folders. Point both at the current job: one output dir per job, whatever the mode."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def log_hyperparameters(cfg: DictConfig, model: LightningModule, trainer: Trainer) -> None:
    """Send the resolved config to every logger once, as a nested dict (W&B keeps the nesting),
    plus parameter counts."""
    if not trainer.loggers:
        return
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["model/params/total"] = sum(p.numel() for p in model.parameters())
    hparams["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def get_metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of ``optimized_metric`` for sweepers; NaN (a diverged run) stays NaN."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric='{name}' was not logged; logged metrics: {', '.join(sorted(metrics))}")
    value = float(metrics[name])
    if math.isnan(value):
        log.warning(f"{name} is NaN")
    return value

"""What every entry point does around its task: error reporting, clean-up between multirun jobs,
hyper-parameter logging, and reading the optimized metric."""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning import LightningModule, Trainer
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, open_dict, read_write
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from src.core.errors import ConfigError, UserError, user_error_in
from src.utils.config import print_config_tree, register_resolvers
from src.utils.pylogger import RankedLogger
from src.utils.run_names import is_multirun

log = RankedLogger(__name__)


def task_wrapper(task_func: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Run a task so that a user error prints one line, not a traceback (unless
    ``HYDRA_FULL_ERROR=1``), and so that each job leaves the process as it found it: in a
    multirun the next job runs in this same process. W&B and torch.distributed are closed, and
    the environment is restored, since Lightning's DDP launcher sets ``LOCAL_RANK`` & co. there,
    which would make the next job believe its ranks were started by an external launcher; so is
    ``sys.argv``, which :func:`pin_ddp_relaunch_to_this_job` rewrites."""

    @functools.wraps(task_func)
    def wrap(cfg: DictConfig) -> Any:
        environ, argv = dict(os.environ), list(sys.argv)
        register_resolvers()  # also in a job a launcher runs in another process (submitit, SLURM)
        try:
            try:
                return task_func(cfg)
            except InterpolationResolutionError as e:  # a resolver's own one-line error (${image_folder:...})
                raise (user_error_in(e) or e) from None
        except (UserError, MisconfigurationException, MissingMandatoryValue) as e:
            # Lightning's own check of the trainer settings, and a ??? value left unset, are config errors too
            kind = type(e).__name__ if isinstance(e, UserError) else "ConfigError"
            message = f"{e.full_key} has no value; set it: {e.full_key}=..." if isinstance(e, MissingMandatoryValue) else str(e)
            log.error(f"{kind}: {message.strip()}")
            # In a sweep, re-raise so the sweeper marks just this job as failed (its log says why).
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or is_multirun():
                raise
            raise SystemExit(1) from None
        except SIGTERMException:
            # Lightning ends a fit stopped by SIGTERM with SystemExit(None): status 0, which a scheduler
            # or a sweep takes for a finished job; 128 + SIGTERM is what a shell reports for it
            raise SystemExit(128 + signal.SIGTERM) from None
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
            sys.argv[:] = argv

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


# Command-line flags that choose the primary config, and Hydra overrides that concern sweeping,
# launching or the run folder: a DDP rank relaunched for one job takes the former, not the latter.
_CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
_NOT_FOR_A_RANK = ("hydra.run.", "hydra.job.name", "hydra.output_subdir", "hydra.mode", "hydra.sweep.",
                   "hydra.sweeper", "hydra/sweeper", "hydra.launcher", "hydra/launcher")


def _config_flags(argv: list[str]) -> list[str]:
    flags, i = [], 0
    while i < len(argv):
        if argv[i] in _CONFIG_FLAGS and i + 1 < len(argv):
            flags += argv[i: i + 2]
            i += 2
            continue
        if "=" in argv[i] and argv[i].split("=", 1)[0] in _CONFIG_FLAGS:
            flags.append(argv[i])
        i += 1
    return flags


def pin_ddp_relaunch_to_this_job() -> None:
    """Lightning starts DDP ranks 1..N by re-running ``sys.argv`` with ``hydra.run.dir`` taken
    from the Hydra config. In a multirun, argv holds the whole sweep (``-m a=1,2``) and
    ``run.dir`` is not the job's folder, so each rank would start a sweep of its own in new
    folders. Rebuild argv as this one job: the flags that chose the primary config, this job's
    Hydra overrides (``hydra.searchpath``...) except sweeping and launching ones, run mode, and
    its task overrides; and point ``run.dir`` at the job's folder. Every rank then composes the
    same config, in one output dir per job, whatever the mode."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    hydra_overrides = [o for o in hydra_cfg.overrides.hydra if not o.lstrip("+~").startswith(_NOT_FOR_A_RANK)]
    sys.argv = [sys.argv[0], *_config_flags(sys.argv[1:]), *hydra_overrides, "hydra.mode=RUN",
                *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def log_hyperparameters(config: Mapping[str, Any], model: LightningModule, trainer: Trainer) -> None:
    """Send the resolved config to every logger once, as a nested dict (W&B keeps the nesting),
    plus parameter counts."""
    if not trainer.loggers:
        return
    hparams = dict(config)
    hparams["model/params/total"] = sum(p.numel() for p in model.parameters())
    hparams["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def get_metric_value(metrics: Mapping[str, Any], name: str | None, trainer: Trainer | None = None) -> float | None:
    """The value of ``optimized_metric`` returned to a sweeper: the best score checkpointing kept
    when it watches that metric (runs are compared at their best epoch, the one they test), else
    the last logged value. NaN (a diverged run) stays NaN. A metric that was not logged fails the
    job in a sweep and is a warning outside one (a test-only run logs no val/* metric)."""
    if not name:
        return None
    checkpoint = getattr(trainer, "checkpoint_callback", None)
    if checkpoint is not None and checkpoint.monitor == name and checkpoint.best_model_score is not None:
        value = float(checkpoint.best_model_score)
    elif name in metrics:
        value = float(metrics[name])
    elif is_multirun():
        raise ConfigError(f"optimized_metric='{name}' was not logged; logged metrics: {', '.join(sorted(metrics))}")
    else:
        log.warning(f"optimized_metric='{name}' was not logged by this run; nothing to report to a sweeper")
        return None
    if math.isnan(value):
        log.warning(f"{name} is NaN")
    return value

"""Train, validate and test one configuration: ``python train.py model=cnn data=mnist``.

seed -> compatibility check -> datamodule -> module (``init=checkpoint``: starting weights) ->
callbacks -> loggers -> trainer -> fit -> test on the best checkpoint -> return ``optimized_metric``
(for sweepers).

Three ways to start from a checkpoint, kept apart: ``ckpt_path`` resumes a run (weights, optimizer,
schedule, loops, logger run), ``init=checkpoint init.path=...`` starts a new run from another run's
weights (fine-tuning), and eval.py evaluates one.
"""

import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
import lightning as L
from lightning.pytorch.callbacks import Timer
from omegaconf import DictConfig, OmegaConf

from src.callbacks.run_metadata import RunMetadata
from src.models.pretrained import init_from_checkpoint, published_weights, save_reports
from src.utils.checkpoint import check_checkpoint_matches, load_checkpoint
from src.utils.config import check_compatibility, config_choices, register_resolvers
from src.utils.instantiate import instantiate_callbacks, instantiate_component, instantiate_loggers
from src.utils.pylogger import RankedLogger
from src.utils.run import (
    extras,
    get_metric_value,
    log_hyperparameters,
    pin_ddp_relaunch_to_this_job,
    quiet_non_zero_ranks,
    task_wrapper,
)
from src.utils.tracking import continue_run, save_summary

register_resolvers()
log = RankedLogger(__name__)


@task_wrapper
def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test; returns (metrics, objects) so tests and sweeps can inspect both."""
    choices = config_choices()
    check_compatibility(cfg, choices)
    started = time.monotonic()
    ckpt_path, ckpt = cfg.get("ckpt_path"), None
    if ckpt_path:  # a missing, corrupt or mismatched checkpoint stops here, in one line
        ckpt = load_checkpoint(ckpt_path)
        check_checkpoint_matches(ckpt, choices, ckpt_path)
        if cfg.get("train"):
            continue_run(cfg, ckpt, ckpt_path)
    quiet_non_zero_ranks()
    extras(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info(f"Instantiating datamodule <{cfg.data._target_}>")
    datamodule = instantiate_component(cfg.data)
    log.info(f"Instantiating model <{cfg.model._target_}>")
    model = instantiate_component(cfg.model)
    reports, init = published_weights(model.net), cfg.get("init")
    if init and ckpt_path and cfg.get("train"):
        log.info("init ignored: resuming from ckpt_path restores every weight")
    elif init:
        report, init_ckpt = init_from_checkpoint(model.net, init.path, init.get("prefix_map"), init.get("exclude") or ())
        reports.append(report)
        ckpt = ckpt or init_ckpt
    if reports:
        save_reports(reports, cfg.paths.output_dir)
    if ckpt is not None and hasattr(datamodule, "adopt_checkpoint"):  # e.g. the tokenizer the weights were trained with
        datamodule.adopt_checkpoint(ckpt)

    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    resolved = OmegaConf.to_container(cfg, resolve=True)  # what checkpoints store and loggers get
    callbacks.append(RunMetadata(resolved, choices))
    loggers = instantiate_loggers(cfg.get("logger"))

    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    pin_ddp_relaunch_to_this_job()
    # a Timer callback enforces trainer.max_time (configs/callbacks/timer.yaml); Lightning would
    # warn that it ignores the Trainer's own
    timed = {"max_time": None} if any(isinstance(c, Timer) for c in callbacks) else {}
    # Lightning clips automatic optimization only and refuses the setting otherwise: a GAN clips
    # its own optimizers with the same trainer.gradient_clip_val (configs/model/dcgan.yaml)
    manual = {} if model.automatic_optimization else {"gradient_clip_val": None}
    trainer = instantiate_component(cfg.trainer, callbacks=callbacks, logger=loggers or False, **timed, **manual)
    log_hyperparameters(resolved, model, trainer)

    if cfg.get("train"):
        log.info("Starting training")
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    train_metrics = dict(trainer.callback_metrics)

    if cfg.get("test"):
        log.info("Starting testing")
        # after training, the best checkpoint; without training (train=false), the one given
        best = trainer.checkpoint_callback.best_model_path if cfg.get("train") and trainer.checkpoint_callback else ""
        test_ckpt = best or (None if cfg.get("train") else ckpt_path)
        if not test_ckpt:
            log.warning("No checkpoint to test; testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=test_ckpt)
        log.info(f"Tested checkpoint: {test_ckpt}")

    metrics = {**train_metrics, **trainer.callback_metrics}
    save_summary(cfg, trainer, model, metrics, started)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path="configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    metrics, objects = train(cfg)
    return get_metric_value(metrics, cfg.get("optimized_metric"), objects["trainer"])


if __name__ == "__main__":
    main()

"""Train, validate and test one configuration: ``python train.py model=cnn data=mnist``.

set-up (src/session.py: checkpoint, compatibility, seed, datamodule, module, trainer) -> fit ->
test on the best checkpoint -> ``summary.json`` -> return ``optimized_metric`` (for sweepers).

Three ways to start from a checkpoint, kept apart: ``ckpt_path`` resumes a run (weights, optimizer,
schedule, loops, logger run), ``init=checkpoint init.path=...`` starts a new run from another run's
weights (fine-tuning), and eval.py evaluates one.
"""

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from src.session import build
from src.utils.config import refuse_removed_options, register_resolvers
from src.utils.pylogger import RankedLogger
from src.utils.run import get_metric_value, task_wrapper
from src.utils.sweep_resume import resume_job
from src.utils.tracking import save_summary

register_resolvers()
log = RankedLogger(__name__)


@task_wrapper
def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test; returns (metrics, objects) so tests and sweeps can inspect both."""
    started = time.monotonic()
    resume_job(cfg)  # a sweep job that was killed or requeued continues from its last.ckpt
    session = build(cfg, "train")
    model, datamodule, trainer = session.module, session.datamodule, session.trainer

    if cfg.get("train"):
        log.info("Starting training")
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=session.ckpt_path)
    train_metrics = dict(trainer.callback_metrics)

    if cfg.get("test"):
        log.info("Starting testing")
        # after training, the best checkpoint; without training (train=false), the one given
        best = trainer.checkpoint_callback.best_model_path if cfg.get("train") and trainer.checkpoint_callback else ""
        test_ckpt = best or (None if cfg.get("train") else session.ckpt_path)
        if not test_ckpt:
            log.warning("No checkpoint to test; testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=test_ckpt)
        log.info(f"Tested checkpoint: {test_ckpt}")

    metrics = {**train_metrics, **trainer.callback_metrics}
    save_summary(cfg, trainer, model, metrics, started)
    return metrics, session.objects()


@hydra.main(version_base="1.3", config_path="configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    metrics, objects = train(cfg)
    return get_metric_value(metrics, cfg.get("optimized_metric"), objects["trainer"])


if __name__ == "__main__":
    refuse_removed_options(sys.argv[1:])
    main()

"""Test a checkpoint and write its predictions:
``python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt`` (the checkpoint carries
its model and data; ``model.*``/``data.*`` overrides apply on top).
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
from omegaconf import DictConfig

from src.session import build
from src.utils.config import refuse_removed_options, register_resolvers
from src.utils.distributed import gather_rows
from src.utils.pylogger import RankedLogger
from src.utils.run import task_wrapper

register_resolvers()
log = RankedLogger(__name__)


@task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rebuild the model and data a checkpoint was trained with (command-line overrides on top),
    load its weights (``weights_only=True``), run the test loop and write ``predictions.jsonl``.
    A net without weights (Lead-3) runs without ``ckpt_path``, on the composed config."""
    session = build(cfg, "eval")
    model, datamodule, trainer = session.module, session.datamodule, session.trainer

    log.info(f"Testing {cfg.ckpt_path or cfg.model._target_}")
    model.test_predictions = []
    trainer.test(model=model, datamodule=datamodule)
    metrics = dict(trainer.callback_metrics)
    # rows made while testing; otherwise (a generator's new samples) from the predict loop
    rows = model.test_predictions or [row for rows in trainer.predict(model=model, datamodule=datamodule) for row in rows]
    rows = gather_rows(rows, trainer, model.prediction_key)
    out = Path(cfg.paths.output_dir) / "predictions.jsonl"
    if trainer.is_global_zero:
        with open(out, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        log.info(f"Predictions written to {out}")
    return metrics, session.objects()


@hydra.main(version_base="1.3", config_path="configs", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    refuse_removed_options(sys.argv[1:])
    main()

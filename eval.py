"""Test a checkpoint and write its predictions:
``python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt`` (the checkpoint carries
its model and data; ``model.*``/``data.*`` overrides apply on top).
"""

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
import lightning as L
from omegaconf import DictConfig

from src.utils.checkpoint import load_checkpoint
from src.utils.config import check_compatibility, config_choices, register_resolvers
from src.utils.distributed import gather_rows
from src.utils.errors import CheckpointError
from src.utils.instantiate import instantiate_component, instantiate_loggers
from src.utils.pylogger import RankedLogger
from src.utils.run import extras, task_wrapper
from src.utils.tracking import configure_from_checkpoint

register_resolvers()
log = RankedLogger(__name__)


@task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rebuild the model and data a checkpoint was trained with (command-line overrides on top),
    load its weights (``weights_only=True``), run the test loop and write ``predictions.jsonl``.
    A net without weights (Lead-3) runs without ``ckpt_path``, on the composed config."""
    ckpt = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    choices = configure_from_checkpoint(cfg, ckpt, cfg.ckpt_path) if ckpt is not None else config_choices()
    check_compatibility(cfg, choices)
    extras(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    model = instantiate_component(cfg.model)
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        model.on_load_checkpoint(ckpt)  # as LightningModule.load_from_checkpoint does
    elif model.needs_checkpoint:
        raise CheckpointError(f"model={choices.get('model', cfg.model._target_)} needs trained weights: "
                              "pass ckpt_path=<run dir>/checkpoints/<file>.ckpt")
    datamodule = instantiate_component(cfg.data)
    if ckpt is not None and hasattr(datamodule, "adopt_checkpoint"):  # e.g. the tokenizer the net was trained with
        datamodule.adopt_checkpoint(ckpt)
    trainer = instantiate_component(cfg.trainer, logger=instantiate_loggers(cfg.get("logger")) or False)

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
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path="configs", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()

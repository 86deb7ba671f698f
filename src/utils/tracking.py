"""A run across loggers and sessions: the names and logger ids a resumed run continues, and the
summary a comparison table needs (``summary.json`` in the run dir, the same fields in the W&B run
summary)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, open_dict

from src.core import checkpoints
from src.core.errors import CheckpointError
from src.utils.run_names import adopt_names, resumed_run_dir


def continue_run(cfg: DictConfig, ckpt: Mapping[str, Any], ckpt_path: str) -> None:
    """Resuming training in the run's own folder continues the run everywhere: its names (the
    ``run`` node it started with, so a sweep's job stays in its sweep's group), its W&B run (the
    id stored in the checkpoint: one run in the dashboard), its TensorBoard version folder. The
    CSV logger cannot append to a version folder (Lightning deletes its metrics.csv), so it starts
    the next version, which compare.py joins; summary.json goes until the run ends again. A
    checkpoint resumed elsewhere (another folder, a sweep) starts a new run. Values set on the
    command line win."""
    if Path(cfg.paths.output_dir).resolve() != resumed_run_dir(ckpt_path, True):
        return
    meta = ckpt.get(checkpoints.KEY, {})
    adopt_names(cfg, meta.get("config", {}).get("run", {}))
    stored = meta.get("loggers", {})
    for node in (cfg.get("logger") or {}).values():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        kind = node._target_.rsplit(".", 1)[-1]
        key = {"WandbLogger": "id", "TensorBoardLogger": "version"}.get(kind)
        if key and stored.get(kind) is not None and node.get(key) is None:
            with open_dict(node):
                node[key] = stored[kind]
    Path(cfg.paths.output_dir, "summary.json").unlink(missing_ok=True)


def git_state(root: str | Path) -> dict[str, Any]:
    """The commit a run's code came from, and whether the work tree had changes."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip() != ""
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git/sha": sha, "git/dirty": dirty}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) else value


def run_summary(cfg: DictConfig, trainer: Trainer, model: LightningModule, metrics: Mapping[str, Any],
                started: float) -> dict[str, Any]:
    """The fields a results table compares: the watched metric's best value and the epoch/step it
    came at (the checkpoint that was tested), the test metrics, size, time and code version."""
    watched = cfg.task.get("watch", {})
    summary: dict[str, Any] = {f"run/{k}": v for k, v in cfg.run.items()}
    summary.update({"watched/metric": watched.get("metric"), "watched/mode": watched.get("mode")})
    checkpoint = trainer.checkpoint_callback
    if cfg.get("train") and checkpoint is not None and checkpoint.monitor == watched.get("metric") \
            and checkpoint.best_model_path:
        summary[f"best/{checkpoint.monitor}"] = _plain(checkpoint.best_model_score)
        try:  # a sharded (FSDP) checkpoint is a folder: its epoch and step are left out
            best = checkpoints.read(checkpoint.best_model_path)
            summary.update({"best/epoch": best["epoch"], "best/step": best["global_step"]})
        except (CheckpointError, KeyError):
            pass
    summary.update({k: _plain(v) for k, v in sorted(metrics.items()) if k.startswith("test/")})
    summary["model/params/total"] = sum(p.numel() for p in model.parameters())
    summary["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if cfg.get("train") and timer is not None:  # the Timer's state travels in checkpoints: a resumed run's total
        summary["time/train_s"] = round(timer.time_elapsed("train"), 3)
    summary["time/wall_s"] = round(time.monotonic() - started, 3)  # this session, test included
    summary.update(git_state(os.environ.get("PROJECT_ROOT", ".")))
    return summary


@rank_zero_only
def save_summary(cfg: DictConfig, trainer: Trainer, model: LightningModule, metrics: Mapping[str, Any],
                 started: float) -> None:
    """:func:`run_summary` as ``summary.json`` in the run dir, and in every W&B run's summary."""
    summary = run_summary(cfg, trainer, model, metrics, started)
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    Path(cfg.paths.output_dir, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(summary)

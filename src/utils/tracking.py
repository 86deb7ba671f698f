"""What identifies a run across loggers and sessions: names a dashboard can group (what varies, not
a random word), the folder and logger ids a resumed run continues, and the summary a comparison
table needs (``summary.json`` in the run dir, the same fields in the W&B run summary)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from src.callbacks.run_metadata import KEY

# Overrides that say where or how a run is logged, not what it trains: left out of its name.
_BOOKKEEPING = ("paths", "hydra", "logger", "callbacks", "extras", "ckpt_path", "train", "test", "tags",
                "task_name", "optimized_metric", "hparams_search", "trainer.enable_progress_bar")


def is_bookkeeping(key: str) -> bool:
    """Whether an override (``paths.log_dir``, ``logger=wandb``...) only says where or how to log."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith(f"{k}.") or key.startswith(f"{k}/") for k in _BOOKKEEPING)


@dataclass(frozen=True)
class RunNames:
    """``name``: ``<model>-<data>[-<key>=<value>...]-s<seed>`` (``<experiment>[-...]-s<seed>``
    with ``experiment=``), from the options chosen and the overrides given. ``variant``: the name without its seed, so the seeds of one configuration
    share it. ``group``: one per sweep (``[<experiment>-]sweep-<sweep folder>``), else the variant."""

    name: str
    variant: str
    group: str


def _override_parts(overrides: Sequence[str], named_apart: Sequence[str]) -> list[str]:
    parts = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in named_apart or is_bookkeeping(key):
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}={value}" if value else f"~{key}")
    return parts


def _fixed_in_sweep(sweep_dir: Path) -> set[str]:
    """The overrides a sweep gives every job alike (not ``a=1,2``, ``range()``...), from the
    ``multirun.yaml`` Hydra writes before the first job."""
    try:
        task = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
    except (OSError, AttributeError):
        return set()
    return {o.input_line for o in OverridesParser.create().parse_overrides(list(task)) if not o.is_sweep_override()}


def run_names(cfg: Mapping[str, Any]) -> RunNames:
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = dict(hydra.runtime.choices) if hydra else {}
    overrides = list(hydra.overrides.task) if hydra else []
    multirun = hydra is not None and hydra.mode == RunMode.MULTIRUN
    if multirun:  # a job is named by what varies between the sweep's jobs
        fixed = _fixed_in_sweep(Path(hydra.runtime.output_dir).parent)
        overrides = [o for o in overrides if o not in fixed]
    if choices.get("experiment"):  # the experiment names its model and data, unless overridden
        base = [choices["experiment"]]
    else:
        base = [choices.get("model") or str(cfg.get("model", {}).get("_target_", "model")).rsplit(".", 1)[-1],
                choices.get("data") or "data"]
    named_apart = ("seed", "experiment") if choices.get("experiment") else ("seed", "model", "data")
    variant = "-".join([*base, *_override_parts(overrides, named_apart)])
    seed = cfg.get("seed")
    name = variant if seed is None else f"{variant}-s{seed}"
    if multirun:
        experiment = choices.get("experiment")
        sweep = Path(hydra.runtime.output_dir).parent.name
        group = f"{experiment}-sweep-{sweep}" if experiment else f"sweep-{sweep}"
    else:
        group = variant
    return RunNames(name, variant, group)


def run_name_resolver(field: str, _root_: DictConfig) -> str:
    """``${run:name}``, ``${run:variant}``, ``${run:group}`` in configs (logger/wandb.yaml)."""
    return getattr(run_names(_root_), field)


def run_dir_resolver(ckpt_path: str | None, training: bool, new_dir: str) -> str:
    """``hydra.run.dir``: a run resumed from ``<run>/checkpoints/*.ckpt`` continues in ``<run>``
    (its logs, metrics and checkpoints stay one folder); anything else gets ``new_dir``."""
    if ckpt_path and training:
        ckpt = Path(ckpt_path).resolve()
        run = ckpt.parent.parent
        if ckpt.parent.name == "checkpoints" and (run / ".hydra").is_dir():
            return str(run)
    return new_dir


def continue_loggers(cfg: DictConfig, ckpt: Mapping[str, Any], ckpt_path: str) -> None:
    """Resuming training: the W&B run continues under the id stored in the checkpoint (one run in
    the dashboard; ``wandb sync`` appends its offline parts in order), and TensorBoard writes into
    the same version folder when the run continues in its own folder. The CSV logger cannot append
    to a version folder (Lightning deletes its metrics.csv), so it starts the next version, which
    compare.py joins. Ids set on the command line win."""
    stored = ckpt.get(KEY, {}).get("loggers", {})
    in_place = Path(cfg.paths.output_dir).resolve() == Path(ckpt_path).resolve().parent.parent
    wanted = {"WandbLogger": ("id", True), "TensorBoardLogger": ("version", in_place)}
    for node in (cfg.get("logger") or {}).values():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        key, applies = wanted.get(node._target_.rsplit(".", 1)[-1], (None, False))
        stored_id = stored.get(node._target_.rsplit(".", 1)[-1])
        if key and applies and stored_id is not None and node.get(key) is None:
            with open_dict(node):
                node[key] = stored_id


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
    names = run_names(cfg)
    watched = cfg.model.get("watch", {})
    summary: dict[str, Any] = {"run/name": names.name, "run/variant": names.variant, "run/group": names.group,
                               "watched/metric": watched.get("metric"), "watched/mode": watched.get("mode")}
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.monitor == watched.get("metric") and checkpoint.best_model_path:
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True, mmap=True)
        summary.update({f"best/{checkpoint.monitor}": _plain(checkpoint.best_model_score),
                        "best/epoch": best["epoch"], "best/step": best["global_step"]})
    summary.update({k: _plain(v) for k, v in sorted(metrics.items()) if k.startswith("test/")})
    summary["model/params/total"] = sum(p.numel() for p in model.parameters())
    summary["model/params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None:  # the Timer's state travels in checkpoints: a resumed run's total
        summary["time/train_s"] = round(timer.time_elapsed("train"), 3)
    summary["time/wall_s"] = round(time.monotonic() - started, 3)  # this session, test included
    summary.update(git_state(os.environ.get("PROJECT_ROOT", ".")))
    return summary


@rank_zero_only
def save_summary(summary: dict[str, Any], trainer: Trainer, output_dir: str | Path) -> None:
    """``summary.json`` in the run dir, and the same fields in every W&B run's summary."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(summary)

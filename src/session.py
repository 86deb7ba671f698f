"""One set-up for every entry point: ``build(cfg, mode)`` turns a composed config into the
datamodule, the task module and the trainer a run needs.

``mode`` says where the weights come from:

- ``train``: fresh, ``init=checkpoint`` (another run's weights) or ``ckpt_path`` (resume: the
  checkpoint must match ``model=``/``data=``; its run, loggers and names continue);
- ``eval``, ``compress``, ``predict``: ``ckpt_path`` alone describes the run (its model and data,
  command-line ``model.*``/``data.*`` on top); weights load with ``weights_only=True``.

Each step is here once: checkpoint loading and matching, the model/data compatibility check,
seeding, instantiation, what the data adopts from a checkpoint (a tokenizer), run metadata in
checkpoints, the Timer that enforces ``trainer.max_time``, and pinning DDP's relaunch to this job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.plugins.environments import TorchElasticEnvironment
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.callbacks.run_metadata import RunMetadata
from src.core import checkpoints
from src.core.errors import CheckpointError, ConfigError
from src.core.weights import published_weights
from src.models.distillation import LABEL_TASKS, Distils
from src.models.pretrained import init_from_checkpoint, save_reports
from src.utils.config import check_compatibility, config_choices
from src.utils.instantiate import (
    instantiate_callbacks,
    instantiate_component,
    instantiate_loggers,
)
from src.utils.pylogger import RankedLogger
from src.utils.run import (
    extras,
    log_hyperparameters,
    pin_ddp_relaunch_to_this_job,
    quiet_non_zero_ranks,
)
from src.utils.run_names import adopt_names
from src.utils.tracking import continue_run

log = RankedLogger(__name__)

Mode = Literal["train", "eval", "compress", "predict"]


@runtime_checkable
class AdoptsCheckpoint(Protocol):
    """A datamodule that takes something from the checkpoint its weights come from (the tokenizer
    a summarizer was trained with)."""

    def adopt_checkpoint(self, ckpt: Mapping[str, Any]) -> None: ...


@runtime_checkable
class MayNeedNoWeights(Protocol):
    """A task module that knows whether its net has weights to load (Lead-3 has none)."""

    @property
    def needs_checkpoint(self) -> bool: ...


@dataclass
class Session:
    """What :func:`build` made. ``trainer`` is None for ``compress``, which makes its own
    (:func:`make_trainer`) per fine-tuning and measurement."""

    cfg: DictConfig
    mode: Mode
    choices: dict[str, str]
    datamodule: LightningDataModule
    module: LightningModule
    trainer: Trainer | None
    ckpt: dict[str, Any] | None = None
    resolved: dict[str, Any] = field(default_factory=dict)

    @property
    def ckpt_path(self) -> str | None:
        return self.cfg.get("ckpt_path")

    def objects(self) -> dict[str, Any]:
        """What the entry points return beside their metrics (tests inspect them)."""
        return {"cfg": self.cfg, "datamodule": self.datamodule, "model": self.module, "trainer": self.trainer}


def build(cfg: DictConfig, mode: Mode) -> Session:
    """Everything before the trainer's first loop, in the same order for every entry point; a bad
    checkpoint, a model/data mismatch or a bad option stops here in one line."""
    ckpt_path = cfg.get("ckpt_path")
    ckpt = checkpoints.load(ckpt_path) if ckpt_path else None
    if mode == "train":
        choices = config_choices()
        if ckpt is not None:
            check_checkpoint_matches(ckpt, choices, ckpt_path)
            if cfg.get("train"):
                continue_run(cfg, ckpt, ckpt_path)
    else:
        if ckpt is None and mode in ("compress", "predict"):
            raise CheckpointError(f"{mode}.py needs ckpt_path=<run dir>/checkpoints/<file>.ckpt")
        choices = configure_from_checkpoint(cfg, ckpt, ckpt_path) if ckpt is not None else config_choices()
    check_compatibility(cfg, choices)
    if mode == "train":
        quiet_non_zero_ranks()
    extras(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info(f"Instantiating datamodule <{cfg.data._target_}>")
    datamodule = instantiate_component(cfg.data)
    log.info(f"Instantiating model <{cfg.model._target_}>")
    module = instantiate_component(cfg.model)
    if mode == "train":
        distil(cfg, module)
        ckpt = _initial_weights(cfg, module, ckpt)
    elif ckpt is not None:
        module.on_load_checkpoint(ckpt)  # first, as LightningModule.load_from_checkpoint: its checks name the problem
        module.load_state_dict(ckpt["state_dict"])
    elif isinstance(module, MayNeedNoWeights) and module.needs_checkpoint:
        raise CheckpointError(f"model={choices.get('model', cfg.model._target_)} needs trained weights: "
                              "pass ckpt_path=<run dir>/checkpoints/<file>.ckpt")
    if ckpt is not None and isinstance(datamodule, AdoptsCheckpoint):
        datamodule.adopt_checkpoint(ckpt)

    resolved = OmegaConf.to_container(cfg, resolve=True)  # what checkpoints store and loggers get
    session = Session(cfg, mode, choices, datamodule, module, None, ckpt, resolved)
    if mode == "train":
        callbacks = [*instantiate_callbacks(cfg.get("callbacks")), RunMetadata(resolved, choices)]
        # Lightning clips automatic optimization only and refuses the setting otherwise: a GAN clips
        # its own optimizers with the same trainer.gradient_clip_val (src/models/generation.py)
        manual = {} if module.automatic_optimization else {"gradient_clip_val": None}
        session.trainer = make_trainer(cfg, callbacks, **manual)
        log_hyperparameters(resolved, module, session.trainer)
    elif mode == "eval":
        session.trainer = make_trainer(cfg, [])
    elif mode == "predict":  # one device: the inputs are not sharded; answers go to predictions.jsonl
        session.trainer = make_trainer(cfg, [], loggers=False, devices=1, num_nodes=1, strategy="auto",
                                       enable_progress_bar=False, enable_model_summary=False)
    return session


def make_trainer(cfg: DictConfig, callbacks: list[Callback], loggers: bool = True, **overrides: Any) -> Trainer:
    """``cfg.trainer`` with these callbacks and the configured loggers (``loggers=False``: none).
    A Timer callback enforces ``trainer.max_time`` (configs/callbacks/timer.yaml): Lightning would
    warn that it ignores the Trainer's own beside one."""
    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    pin_ddp_relaunch_to_this_job()
    if any(isinstance(c, Timer) for c in callbacks):
        overrides.setdefault("max_time", None)
    logger = (instantiate_loggers(cfg.get("logger")) or False) if loggers else False
    trainer = instantiate_component(cfg.trainer, callbacks=callbacks, logger=logger, **overrides)
    check_launched_processes(trainer)
    return trainer


def check_launched_processes(trainer: Trainer) -> None:
    """Processes torchrun started must be the ones the trainer asks for (Lightning would say so
    with a traceback once ``fit`` starts)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if isinstance(environment, TorchElasticEnvironment):
        asked = trainer.num_devices * trainer.num_nodes
        if asked != environment.world_size():
            raise ConfigError(f"torchrun started {environment.world_size()} processes, but trainer.devices="
                              f"{trainer.num_devices} x trainer.num_nodes={trainer.num_nodes} is {asked}; set them to "
                              "torchrun's --nproc_per_node and --nnodes")


def distil(cfg: DictConfig, module: LightningModule) -> None:
    """``distill=kd``: the teacher's soft targets join the module's training loss. Evaluation
    never builds it: a student is evaluated alone."""
    settings = cfg.get("distill")
    if not settings:
        return
    if "_target_" not in settings:  # settings of an experiment without distill=kd (distill=none)
        raise ConfigError(f"distill={OmegaConf.to_container(settings)} has no teacher to distil; choose distill=kd, "
                          "or drop the distill.* settings")
    if cfg.task.name not in LABEL_TASKS or not isinstance(module, Distils):
        raise ConfigError(f"distill=kd distils labels ({' or '.join(LABEL_TASKS)} tasks); task={cfg.task.name} has "
                          "none: drop distill=kd")
    module.distil_from(instantiate_component(settings))


def _initial_weights(cfg: DictConfig, module: LightningModule, ckpt: dict[str, Any] | None) -> dict[str, Any] | None:
    """Published weights the net loaded when built, and ``init=checkpoint``; their tables go to the
    run folder. Returns the checkpoint the data adopts from: the resumed one, else the init one."""
    reports, init = published_weights(module.net), cfg.get("init")
    if init and ckpt is not None and cfg.get("train"):
        log.info("init ignored: resuming from ckpt_path restores every weight")
    elif init:
        report, init_ckpt = init_from_checkpoint(module.net, init.path, init.get("prefix_map"), init.get("exclude") or ())
        reports.append(report)
        ckpt = ckpt or init_ckpt
    if reports:
        save_reports(reports, cfg.paths.output_dir)
    return ckpt


# -- a checkpoint against the composed config ------------------------------------------------------
#: the config groups a checkpoint's record holds whole, which a later command must not change
_RECORDED = ("task", "model", "data")


def check_checkpoint_matches(ckpt: Mapping[str, Any], choices: Mapping[str, str], path: str | Path) -> None:
    """train.py: fail when a checkpoint to resume or test was trained with other ``model=``/
    ``data=`` options than the ones composed now, naming the command that would work."""
    trained = ckpt.get(checkpoints.KEY, {}).get("choices", {})
    _refuse_other_choices(trained, {g: choices.get(g) for g in _RECORDED}, path,
                          f"python train.py ckpt_path={path} {_trained_with(trained)}")


def _trained_with(trained: Mapping[str, str]) -> str:
    return " ".join(f"{g}={trained[g]}" for g in ("model", "data") if g in trained)


def _refuse_other_choices(trained: Mapping[str, str], chosen: Mapping[str, Any], path: str | Path, command: str) -> None:
    """One line when a ``model=``/``data=`` choice differs from the one the checkpoint records."""
    wrong = {g: v for g, v in chosen.items() if g in trained and trained[g] != v}
    if wrong:
        now = " ".join(f"{g}={v}" for g, v in wrong.items())
        raise CheckpointError(f"{path} was trained with {_trained_with(trained)}, not {now}; run: {command}")


def _rebase(node: Any, old: str, new: str) -> Any:
    """``node`` with every string under the folder ``old`` moved under ``new``."""
    if isinstance(node, dict):
        return {k: _rebase(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v, old, new) for v in node]
    if isinstance(node, str) and old and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new.rstrip("/") + node[len(old.rstrip("/")):]
    return node


def use_checkpoint_config(cfg: DictConfig, ckpt: Mapping[str, Any], overrides: Sequence[str], path: str | Path) -> dict[str, str]:
    """Make ``cfg.task``, ``cfg.model`` and ``cfg.data`` the ones a checkpoint was trained with, from
    the resolved config it carries, so ``eval.py ckpt_path=X`` alone evaluates what was trained:

    - a ``task=``, ``model=`` or ``data=`` on the command line must name what the checkpoint was
      trained with (one line naming what differs);
    - ``task.*``, ``model.*`` and ``data.*`` overrides on the command line apply on top;
    - values under the training machine's ``paths.data_dir`` move under this one's;

    Returns the checkpoint's config choices. A checkpoint without archlab's record (not written by
    archlab) leaves ``cfg`` as composed."""
    record = checkpoints.RunRecord.of(ckpt)
    if record is None:
        return {}
    stored = record.config
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    chosen = {o.key_or_group: o.value() for o in parsed if o.key_or_group in _RECORDED}
    _refuse_other_choices(record.choices, chosen, path,
                          f"python {cfg.get('task_name', 'eval')}.py ckpt_path={path} (the checkpoint knows its model and data)")
    with open_dict(cfg):
        cfg.task = OmegaConf.create(stored["task"])
        cfg.model = OmegaConf.create(stored["model"])
        cfg.data = OmegaConf.create(_rebase(stored["data"], stored.get("paths", {}).get("data_dir", ""),
                                            str(cfg.paths.data_dir)))
        for o in parsed:
            if o.key_or_group.startswith(("task.", "model.", "data.")):
                if o.is_delete():  # as Hydra: the key goes, the constructor's default applies
                    parent, _, leaf = o.key_or_group.rpartition(".")
                    OmegaConf.select(cfg, parent).pop(leaf, None)
                else:
                    OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True, force_add=True)
    return dict(record.choices)


def configure_from_checkpoint(cfg: DictConfig, ckpt: Mapping[str, Any], ckpt_path: str) -> dict[str, str]:
    """eval.py, compress.py, predict.py: the model and data the checkpoint was trained with
    (command-line ``model.*``/``data.*`` on top), and the run named after the training run it
    starts from. Returns the config choices, the checkpoint's ``model``/``data`` among them."""
    choices = config_choices()
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    choices.update(use_checkpoint_config(cfg, ckpt, overrides, ckpt_path))
    record = checkpoints.RunRecord.of(ckpt)
    adopt_names(cfg, record.config.get("run", {}) if record else {})  # W&B: next to the training run
    if HydraConfig.initialized():  # names of checkpoints without them: from the checkpoint's choices
        with read_write(HydraConfig.get()):
            HydraConfig.get().runtime.choices.update({g: choices[g] for g in _RECORDED if g in choices})
    return choices

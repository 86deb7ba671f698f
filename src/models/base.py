"""What the task LightningModules share, so each task's module holds only its own logic.

- :class:`TaskModule` (every task): the injected net, the optimizer and scheduler factories
  (``_partial_`` configs, kept out of ``hparams`` so checkpoints load with ``weights_only=True``),
  channels-last and ``torch.compile`` of the net, and ``configure_optimizers``.
- :class:`LabelTaskModule` (tasks that predict one label per example: image classes, VQA
  answers): per-stage metric collections and mean losses, and the best validation accuracy so
  far (``val/acc_best``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection

from src.utils.errors import ConfigError, describe

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def build_optimizers(
    module: LightningModule,
    optimizer: OptimizerFactory | None,
    scheduler: SchedulerFactory | None,
    interval: str = "epoch",
    monitor: str | None = "val/loss",
    params: Iterable[nn.Parameter] | None = None,
    suffix: str = "",
) -> Any:
    """Call the ``_partial_`` optimizer (and scheduler) from the model config, over ``params``
    (the whole model by default). ``suffix`` names one of several optimizers: ``_g`` is
    ``model.optimizer_g``, its learning rate logged as ``train/lr_g``.

    A scheduler whose signature takes ``total_steps`` (OneCycleLR) and does not set it gets the
    trainer's estimate, so one config serves any dataset size, batch size or device count.
    """
    name = f"optimizer{suffix}"
    if optimizer is None:
        raise ConfigError(f"the model config has no {name}; set model.{name} (a _partial_ torch.optim class)")
    try:
        opt = optimizer(params=module.trainer.model.parameters() if params is None else params)
    except (ValueError, TypeError) as e:  # torch checks lr, betas, weight_decay... here
        raise ConfigError(f"model.{name} rejected its settings ({describe(e)}); fix model.{name}.*") from e
    if scheduler is None:
        return opt
    kwargs = {}
    func = getattr(scheduler, "func", scheduler)
    if "total_steps" in inspect.signature(func).parameters and "total_steps" not in getattr(scheduler, "keywords", {}):
        kwargs["total_steps"] = int(module.trainer.estimated_stepping_batches)
    try:
        sched = scheduler(optimizer=opt, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model.scheduler rejected its settings ({describe(e)}); fix model.scheduler.*") from e
    # "name" is what LearningRateMonitor logs under: train/lr, per the stage/name convention.
    config = {"scheduler": sched, "interval": interval, "name": f"train/lr{suffix}"}
    if monitor is not None:
        config["monitor"] = monitor
    return {"optimizer": opt, "lr_scheduler": config}


class TaskModule(LightningModule):
    """Holds ``net`` and the factories; subclasses call ``save_hyperparameters(ignore=IGNORED)``
    so that only plain values are saved. ``hparams.channels_last`` and ``hparams.compile`` (when
    a subclass has them) act on the net at setup.

    ``test_predictions``: set it to a list before testing (eval.py does) and a module whose
    predictions are made on the test examples adds one row per example while it tests, so they
    are computed (summaries decoded) once, not again by a predict loop."""

    #: constructor arguments that are objects, not values: never saved in hparams
    IGNORED = ["net", "optimizer", "scheduler"]
    #: the field that orders prediction rows that are not one per loader item (see gather_rows)
    prediction_key: str | None = None

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.test_predictions: list[dict[str, Any]] | None = None

    @property
    def needs_checkpoint(self) -> bool:
        """eval.py refuses to run without ``ckpt_path`` when the net has weights to load."""
        return any(True for _ in self.net.parameters())

    def setup(self, stage: str) -> None:
        # NHWC convolutions are faster on CPU (oneDNN) and on tensor cores.
        if self.hparams.get("channels_last"):
            self.net.to(memory_format=torch.channels_last)
        # nn.Module.compile() compiles forward in place: the state_dict keys stay the same, so
        # checkpoints of compiled runs load into uncompiled nets and vice versa.
        if self.hparams.get("compile") and stage == "fit":
            self.net.compile()

    def configure_optimizers(self) -> Any:
        if not self.needs_checkpoint:
            raise ConfigError(f"{type(self.net).__name__} has no weights to train; evaluate it with eval.py and "
                              "the same model= and data= (no ckpt_path needed)")
        return build_optimizers(self, self.optimizer_factory, self.scheduler_factory,
                                self.hparams.get("scheduler_interval", "epoch"),
                                self.hparams.get("scheduler_monitor", "val/loss"))


class LabelTaskModule(TaskModule):
    """Subclasses call :meth:`_stage_metrics` in ``__init__`` and give ``_step(batch, stage)``."""

    def _stage_metrics(self, metrics: dict[str, Metric]) -> None:
        """``{train,val,test}_metrics`` (names prefixed ``stage/``) and ``{train,val,test}_loss``."""
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        # Persistent: part of the state_dict, so a resumed run remembers its best epoch so far.
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)

    def _step(self, batch: Any, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits of a batch, with the stage's loss and metrics updated and logged."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a few batches of an untrained net are no "best epoch"
            return
        self.val_acc_best(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

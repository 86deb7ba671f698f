"""What the task LightningModules share, so each task's module holds only its own logic.

- :class:`TaskModule` (every task): the injected net, the optimizer and scheduler factories
  (``_partial_`` configs, kept out of ``hparams`` so checkpoints load with ``weights_only=True``),
  channels-last and ``torch.compile`` of the net, and ``configure_optimizers`` with layer-wise
  learning rates (``model.lr_scales``); on resume, schedules stretched to a new run length, and a
  checkpoint whose weights or optimizers this run cannot take stopped in one line.
- :class:`LabelTaskModule` (tasks that predict one label per example: image classes, VQA
  answers): per-stage metric collections and mean losses, the best validation accuracy so far
  (``val/acc_best``), and a training loss that ``distill=kd`` wraps (:meth:`distil_from`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, Metric, MetricCollection, MinMetric

from src.core.checkpoints import KEY
from src.core.errors import CheckpointError, ConfigError, DataError, describe
from src.core.prefix import under
from src.models.distillation import Distiller, LabelLoss
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


def _keyword(factory: Callable[..., Any], name: str) -> Any:
    """A ``_partial_`` factory's setting, else its callable's default (None if it has neither)."""
    if name in getattr(factory, "keywords", {}):
        return factory.keywords[name]
    parameter = inspect.signature(getattr(factory, "func", factory)).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def scaled_param_groups(net: nn.Module, lr_scales: Mapping[str, float], lr: float) -> list[dict[str, Any]]:
    """Discriminative learning rates (Howard & Ruder 2018): the parameters under each module
    prefix of ``lr_scales`` (``{features: 0.1}``; the longest prefix wins) in a group at
    ``lr * scale``, the rest in a group at ``lr``. A prefix that names no parameter of the net is a
    ConfigError (a typo would silently train everything at one rate)."""
    prefixes = sorted(lr_scales, key=len, reverse=True)
    groups: dict[str, list[nn.Parameter]] = {p: [] for p in prefixes}
    rest: list[nn.Parameter] = []
    for name, param in net.named_parameters():
        match = next((p for p in prefixes if under(name, p)), None)
        (groups[match] if match is not None else rest).append(param)
    unused = [p for p in prefixes if not groups[p]]
    if unused:
        modules = sorted({n.split(".")[0] for n, _ in net.named_parameters()})
        raise ConfigError(f"model.lr_scales names {unused}, which hold no parameters of {type(net).__name__} "
                          f"(its top-level modules: {', '.join(modules)}); use module prefixes such as features.0")
    out = [{"params": params, "lr": lr * float(lr_scales[p]), "name": p} for p, params in groups.items()]
    return out + ([{"params": rest, "lr": lr, "name": "rest"}] if rest else [])


def build_optimizers(
    module: LightningModule,
    optimizer: OptimizerFactory | None,
    scheduler: SchedulerFactory | None,
    interval: str = "epoch",
    monitor: str | None = "val/loss",
    params: Iterable[nn.Parameter] | None = None,
    suffix: str = "",
    lr_scales: Mapping[str, float] | None = None,
) -> Any:
    """Call the ``_partial_`` optimizer (and scheduler) from the model config, over ``params``
    (the whole model by default). ``suffix`` names one of several optimizers: ``_g`` is
    ``model.optimizer_g``, its learning rate logged as ``train/lr_g``.

    ``lr_scales`` (``{features: 0.1}``, prefixes of ``module.net``'s parameter names) puts those
    parameters in their own groups at scaled rates (:func:`scaled_param_groups`); a OneCycleLR's
    ``max_lr`` is scaled with them, other schedulers scale each group's own rate.

    A scheduler whose shape spans the run gets its length from the trainer (:func:`length_arguments`).
    """
    name = f"optimizer{suffix}"
    if optimizer is None:
        raise ConfigError(f"the model config has no {name}; set model.{name} (a _partial_ torch.optim class)")
    groups, lr = None, _keyword(optimizer, "lr")
    if lr_scales:
        if params is not None:
            raise ConfigError(f"model.lr_scales is not supported with several optimizers ({name}); remove it")
        if lr is None:
            raise ConfigError(f"model.lr_scales needs model.{name}.lr to scale; set it")
        groups = scaled_param_groups(module.net, lr_scales, float(lr))
        params = [*groups, *_outside_net(module)]
    try:
        opt = optimizer(params=module.trainer.model.parameters() if params is None else params)
    except (ValueError, TypeError) as e:  # torch checks lr, betas, weight_decay... here
        raise ConfigError(f"model.{name} rejected its settings ({describe(e)}); fix model.{name}.*") from e
    if scheduler is None:
        return opt
    trainer = module.trainer
    kwargs = length_arguments(scheduler, interval, lambda: int(trainer.estimated_stepping_batches), trainer.max_epochs)
    max_lr = _keyword(scheduler, "max_lr")
    if groups is not None and isinstance(max_lr, (int, float)):  # one peak per group, in the groups' ratios
        kwargs["max_lr"] = [max_lr * group["lr"] / lr for group in opt.param_groups]
    try:
        sched = scheduler(optimizer=opt, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model.scheduler rejected its settings ({describe(e)}); fix model.scheduler.*") from e
    except ZeroDivisionError as e:  # OneCycleLR when pct_start * total_steps leaves its warm-up under one step
        raise ConfigError(f"model.scheduler: {kwargs.get('total_steps', 'the')} optimizer steps are too few for its "
                          "warm-up and decay phases; train more steps (trainer.max_epochs, a larger data.label_fraction) "
                          "or raise model.scheduler.pct_start") from e
    # "name" is what LearningRateMonitor logs under: train/lr, per the stage/name convention.
    config = {"scheduler": sched, "interval": interval, "name": f"train/lr{suffix}"}
    if schedule_length(sched) is not None:  # before a resume's checkpoint overwrites it (TaskModule.on_train_start)
        module.schedule_lengths[config["name"]] = schedule_length(sched)
    if monitor is not None:
        config["monitor"] = monitor
    return {"optimizer": opt, "lr_scheduler": config}


def length_arguments(scheduler: SchedulerFactory, interval: str, steps: Callable[[], int],
                     epochs: int | None) -> dict[str, int]:
    """The run's length for a scheduler whose shape spans it and whose config leaves it unset:
    OneCycleLR's ``total_steps`` (``steps()``, the optimizer steps of the run), CosineAnnealingLR's
    ``T_max`` (steps, or ``epochs`` when ``interval`` is ``epoch``). One config then serves any
    dataset size, batch size or device count."""
    unset = set(inspect.signature(getattr(scheduler, "func", scheduler)).parameters) - set(getattr(scheduler, "keywords", {}))
    if "total_steps" in unset or ("T_max" in unset and interval == "step"):
        return {"total_steps" if "total_steps" in unset else "T_max": steps()}
    if "T_max" not in unset:
        return {}
    if epochs in (None, -1):
        raise ConfigError("model.scheduler needs trainer.max_epochs for its T_max (model.scheduler_interval: epoch); "
                          "set it, or model.scheduler_interval=step")
    return {"T_max": epochs}


def schedule_length(scheduler: Any) -> int | None:
    """The number of steps a scheduler's shape is laid out over (OneCycleLR's ``total_steps``,
    CosineAnnealingLR's ``T_max``); None for shapes that do not depend on the run's length
    (ReduceLROnPlateau, warm-up then inverse square root, exponential decay...)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        return scheduler.total_steps
    return scheduler.T_max if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) else None


def stretch_schedule(scheduler: Any, length: int, ckpt_path: str, extra: str) -> str:
    """Lay out the rest of a resumed scheduler's shape over ``length`` steps, continuing from the
    learning rate it has reached; returns the line to log. A shape that cannot continue without a
    jump (it has ended: its learning rate is at the floor) is a CheckpointError naming ``extra``,
    the command-line length of a new run started from the checkpoint's weights.

    One-cycle (two phases): in its warm-up, the decay ends later; in its decay, the decay's start
    moves so that the share of the decay done, hence the learning rate (and momentum), is the same
    at the current step, and the rest anneals to the same final rate at the new end. Cosine:
    torch steps it multiplicatively from the current rate, so a new ``T_max`` continues it."""
    old, step, lr = schedule_length(scheduler), scheduler.last_epoch, scheduler.get_last_lr()[0]
    one_cycle = isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    if one_cycle:
        warm, decay = scheduler._schedule_phases[0], scheduler._schedule_phases[-1]
        done = 0.0 if step <= warm["end_step"] else (step - warm["end_step"]) / (decay["end_step"] - warm["end_step"])
    else:
        done = step / old
    kind = "one-cycle" if one_cycle else "cosine"
    if done >= 1 or length <= step + 1 or (one_cycle and len(scheduler._schedule_phases) != 2):
        raise CheckpointError(f"ckpt_path={ckpt_path} has run its {kind} schedule of {old} steps to step {step} "
                              f"(learning rate {lr:.3g}); it cannot be stretched to {length} steps without a jump in "
                              f"the learning rate; train longer from its weights with a new schedule: init=checkpoint "
                              f"init.path={ckpt_path} {extra}")
    if one_cycle:
        if done > 0:
            warm["end_step"] = (step - done * (length - 1)) / (1 - done)
        decay["end_step"] = length - 1
        scheduler.total_steps = length
    else:
        scheduler.T_max = length
    return (f"Resumed {kind} schedule stretched from {old} to {length} steps: from step {step} (learning rate "
            f"{lr:.3g}) it anneals to its final rate at the new end")


def _outside_net(module: LightningModule) -> list[dict[str, Any]]:
    """The module's own parameters that are not the net's (a probe head), at the base rate."""
    in_net = {id(p) for p in module.net.parameters()}
    rest = [p for p in module.parameters() if id(p) not in in_net]
    return [{"params": rest, "name": "module"}] if rest else []


class TaskModule(LightningModule):
    """Holds ``net``, the factories and the settings every task shares (the scheduler's interval
    and monitor, ``lr_scales``, ``compile`` and ``channels_last``, which act on the net at setup):
    subclasses pass them on from their own constructors, whose signatures Hydra fills, and call
    ``save_hyperparameters(ignore=IGNORED)`` so that only plain values are saved.

    ``test_predictions``: set it to a list before testing (eval.py does) and a module whose
    predictions are made on the test examples adds one row per example while it tests, so they
    are computed (summaries decoded) once, not again by a predict loop."""

    #: constructor arguments that are objects, not values: never saved in hparams
    IGNORED = ["net", "optimizer", "scheduler"]
    #: the field that orders prediction rows that are not one per loader item (see gather_rows)
    prediction_key: str | None = None

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory | None = None,
                 scheduler: SchedulerFactory | None = None, *, scheduler_interval: str = "epoch",
                 scheduler_monitor: str | None = "val/loss", lr_scales: Mapping[str, float] | None = None,
                 compile: bool = False, channels_last: bool = False) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.scheduler_monitor, self.lr_scales = scheduler_interval, scheduler_monitor, lr_scales
        self.compile_net, self.channels_last = compile, channels_last
        self.test_predictions: list[dict[str, Any]] | None = None
        #: each scheduler's length as built for this run, by its name (see build_optimizers)
        self.schedule_lengths: dict[str, int] = {}
        #: the parameter groups of each optimizer a resumed checkpoint holds, until they are checked
        self._resumed_groups: list[list[dict[str, Any]]] | None = None

    @property
    def needs_checkpoint(self) -> bool:
        """eval.py refuses to run without ``ckpt_path`` when the net has weights to load."""
        return any(True for _ in self.net.parameters())

    def setup(self, stage: str) -> None:
        # NHWC convolutions are faster on CPU (oneDNN) and on tensor cores.
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        # nn.Module.compile() compiles forward in place: the state_dict keys stay the same, so
        # checkpoints of compiled runs load into uncompiled nets and vice versa.
        if self.compile_net and stage == "fit":
            self.net.compile()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint whose weights do not fit this net (a ``model.net.*`` override on resume)
        is one line, not torch's list of size mismatches. On resume, the optimizer and schedule
        settings of this run that the restored state replaces are named in one warning, and the
        saved optimizers are checked against this run's once those are built (:meth:`on_fit_start`)."""
        path = self._trainer.ckpt_path if self._trainer is not None else "the checkpoint"
        # sharding strategies (FSDP) restore after setup, into tensors of other shapes: Lightning checks those
        sharded = self._trainer is not None and self.trainer.strategy.restore_checkpoint_after_setup
        own = {} if sharded else self.state_dict()
        wrong = [(k, list(v.shape), list(own[k].shape)) for k, v in checkpoint.get("state_dict", {}).items()
                 if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
        if wrong:
            key, theirs, ours = wrong[0]
            raise CheckpointError(f"ckpt_path={path} does not fit this model: {key} is {theirs} there, {ours} here "
                                  f"({len(wrong)} tensors differ); resume with the model.net settings it was trained "
                                  f"with, or start a new run from its weights: init=checkpoint init.path={path}")
        if self._trainer is None or self.trainer.state.fn != "fit":
            return
        self._resumed_groups = [state["param_groups"] for state in checkpoint.get("optimizer_states", [])]
        trained = checkpoint.get(KEY, {}).get("config", {}).get("model", {})
        ignored = [f"model.{name}.{k}={v}" for name, factory in self.optimization_factories().items()
                   for k, v in getattr(factory, "keywords", {}).items()
                   if isinstance(trained.get(name), dict) and k in trained[name] and trained[name][k] != v]
        if ignored:
            log.warning(f"Resuming restores the optimizer and schedule state of ckpt_path={path}: {', '.join(ignored)} "
                        "do not apply (the restored state keeps the trained run's values); for new settings from its "
                        f"weights: init=checkpoint init.path={path}")

    def optimization_factories(self) -> dict[str, Any]:
        """The ``_partial_`` optimizer and scheduler factories, by their key under ``model``."""
        return {"optimizer": self.optimizer_factory, "scheduler": self.scheduler_factory}

    def on_fit_start(self) -> None:
        """Resuming restores each optimizer's state over the one this run built: one that cannot
        take it (another optimizer class, other ``model.lr_scales`` groups) is one line here, not
        torch's error while Lightning restores it."""
        resumed, self._resumed_groups = self._resumed_groups, None
        if not resumed:
            return
        path, fresh = self.trainer.ckpt_path, [opt.param_groups for opt in self.trainer.optimizers]
        if [len(groups) for groups in resumed] != [len(groups) for groups in fresh]:
            raise CheckpointError(f"ckpt_path={path} holds optimizers of {[len(g) for g in resumed]} parameter groups, "
                                  f"this run builds {[len(g) for g in fresh]} (model.lr_scales differs from the run's); "
                                  f"resume with its settings, or start a new run from its weights: "
                                  f"init=checkpoint init.path={path}")
        for theirs, ours in zip((g for groups in resumed for g in groups), (g for groups in fresh for g in groups)):
            if set(theirs) - {"params"} != set(ours) - {"params"}:
                raise CheckpointError(f"ckpt_path={path} holds the state of another optimizer class than this run's "
                                      f"(settings {sorted(set(theirs) - {'params'} - set(ours))} there, "
                                      f"{sorted(set(ours) - {'params'} - set(theirs))} here); resume with its "
                                      f"model.optimizer, or start a new run from its weights: init=checkpoint "
                                      f"init.path={path}")

    def teardown(self, stage: str) -> None:
        """A test that ran no batch computed no test metric: the run must not end as if it had."""
        if stage == "test" and sum(self.trainer.num_test_batches) == 0:
            if self.trainer.limit_test_batches == 0:
                raise ConfigError("trainer.limit_test_batches=0 leaves the test no batch, so no test metric was "
                                  "computed; to skip testing, set test=false")
            raise DataError("the test split is empty, so no test metric was computed; check the data's test files "
                            "(data.*), or skip testing with test=false")

    def on_train_start(self) -> None:
        """A resumed run whose length (trainer.max_epochs/max_steps) is not the one its checkpoint's
        schedules were laid out for: stretch them to the new end, or stop in one line."""
        trainer = self.trainer
        extra = (f"trainer.max_epochs={trainer.max_epochs - trainer.current_epoch}" if trainer.max_epochs not in (None, -1)
                 else f"trainer.max_steps={trainer.max_steps - trainer.global_step}")
        for config in trainer.lr_scheduler_configs:
            length = self.schedule_lengths.get(config.name)
            if length is not None and schedule_length(config.scheduler) != length:
                log.info(f"{config.name}: {stretch_schedule(config.scheduler, length, trainer.ckpt_path, extra)}")

    def configure_optimizers(self) -> Any:
        if not self.needs_checkpoint:
            raise ConfigError(f"{type(self.net).__name__} has no weights to train; evaluate it with eval.py and "
                              "the same model= and data= (no ckpt_path needed)")
        return build_optimizers(self, self.optimizer_factory, self.scheduler_factory, self.scheduler_interval,
                                self.scheduler_monitor, lr_scales=self.lr_scales)


class StagedTaskModule(TaskModule):
    """A task whose batches have targets (labels, answers, numbers): per-stage metric collections
    and mean losses, logged as ``stage/name``, and the best validation value of one of them so
    far (``val/acc_best``). Subclasses call :meth:`_stage_metrics` in ``__init__`` and give
    ``_step(batch, stage)``.

    Steps only update the metrics; each stage logs them once, at its epoch end (the metric
    objects, which Lightning computes, syncs over processes and resets), so a step pays no
    logging. ``train_metrics_every=N`` updates the training metrics (not the loss) on every
    N-th batch only: ``train/acc`` becomes the accuracy of a 1/N sample of the epoch's batches,
    and the metric updates cost 1/N per step; 1 measures every batch."""

    #: the metric whose best validation value is tracked, and whether higher is better
    best_metric: tuple[str, str] = ("acc", "max")

    def __init__(self, *args: Any, train_metrics_every: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not (isinstance(train_metrics_every, int) and train_metrics_every >= 1):
            raise ConfigError(f"model.train_metrics_every={train_metrics_every} must be an integer >= 1 (1: every "
                              "training batch updates the training metrics)")
        self.train_metrics_every = train_metrics_every

    def _stage_metrics(self, metrics: dict[str, Metric]) -> None:
        """``{train,val,test}_metrics`` (names prefixed ``stage/``), ``{train,val,test}_loss`` and
        ``val_<best>_best``."""
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train/")
        self.val_metrics = collection.clone(prefix="val/")
        self.test_metrics = collection.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        name, mode = self.best_metric
        best = MaxMetric() if mode == "max" else MinMetric()
        # Persistent: part of the state_dict, so a resumed run remembers its best epoch so far.
        best.persistent(True)
        setattr(self, f"val_{name}_best", best)

    def _metrics_due(self, stage: str) -> bool:
        """Whether this batch updates the stage's metrics: every evaluation batch; training batches
        0, N, 2N, ... of each epoch (``N = train_metrics_every``), so every epoch has some, and a
        run resumed mid-epoch samples the batches the uninterrupted run would have."""
        if stage != "train" or self.trainer.fit_loop.epoch_loop.batch_idx % self.train_metrics_every == 0:
            return True
        # a run resumed past the epoch's last sampled batch samples its first batch (metric states are not
        # checkpointed: the epoch's train/* covers the batches this process trained)
        return not any(m.update_count for m in self.train_metrics.values(copy_state=False))

    def _log_stage(self, stage: str, loss: torch.Tensor, *update: torch.Tensor) -> None:
        """Adds the batch to the stage's mean loss, and to its metrics when they are due."""
        getattr(self, f"{stage}_loss").update(loss)
        if self._metrics_due(stage):
            getattr(self, f"{stage}_metrics").update(*update)

    def _log_epoch(self, stage: str) -> None:
        """The stage's mean loss and metrics, logged once per epoch: those this epoch updated (a
        run resumed from a checkpoint written after the epoch's last batch ends that epoch with
        none; an empty metric would log NaN, 0 or fail)."""
        self._log_updated({f"{stage}/loss": getattr(self, f"{stage}_loss"),
                           **dict(getattr(self, f"{stage}_metrics").items(keep_base=False, copy_state=False))})

    def _log_updated(self, metrics: dict[str, Metric]) -> None:
        updated = {name: metric for name, metric in metrics.items() if metric.update_count}
        if updated:
            self.log_dict(updated, prog_bar=True)

    def _step(self, batch: Any, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and outputs of a batch, with the stage's loss and metrics updated."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")  # the sanity check's too: Lightning resets what was logged
        if self.trainer.sanity_checking:  # a few batches of an untrained net are no "best epoch"
            return
        name = self.best_metric[0]
        best = getattr(self, f"val_{name}_best")
        best(self.val_metrics[name].compute())
        self.log(f"val/{name}_best", best.compute(), sync_dist=True, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")


class LabelTaskModule(StagedTaskModule):
    """A task that predicts one label per example. Subclasses set ``task`` and give
    ``num_labels`` and ``_net_logits(net, inputs)``, and compute their training loss with
    :meth:`_loss` (which ``distill=kd`` wraps)."""

    #: the task's name, which a distillation teacher must share
    task: str
    distiller: Distiller | None = None
    _distilled_loss: LabelLoss | None = None
    #: predict.py's ``top_k``: how many of the most probable labels each prediction lists
    predict_top_k: int = 5

    @property
    def num_labels(self) -> int:
        raise NotImplementedError

    @property
    def train_loss_fn(self) -> LabelLoss:
        """The training loss: the labels' (smoothed) cross-entropy, wrapped by a distiller when
        one was given (:meth:`distil_from`)."""
        return self._distilled_loss or self._label_loss

    def distil_from(self, distiller: Distiller) -> None:
        """``distill=kd``: train on the teacher's soft targets too. The teacher is held outside
        the module's registered children (see Distiller), once it is known to predict this
        module's labels."""
        distiller.check_student(self.task, self.num_labels)
        self.distiller = distiller
        self._distilled_loss = distiller.wrap(self._label_loss, self.net, self._net_logits, self.log)

    def _net_logits(self, net: nn.Module, inputs: Any) -> torch.Tensor:
        """How this task calls a net on a batch's inputs: the student's forward and the teacher's
        soft targets go through this one call, so they always see the same inputs."""
        raise NotImplementedError

    def forward(self, inputs: Any) -> torch.Tensor:
        return self._net_logits(self.net, inputs)

    def _label_loss(self, logits: torch.Tensor, target: torch.Tensor, inputs: Any) -> torch.Tensor:
        """Cross-entropy with the labels, smoothed (training)."""
        return F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor, inputs: Any, stage: str) -> torch.Tensor:
        """The training loss in training; the labels' plain cross-entropy at validation and test."""
        return self.train_loss_fn(logits, target, inputs) if stage == "train" else F.cross_entropy(logits, target)

    def _answer_rows(self, logits: torch.Tensor, names: Sequence[str] | None, key: str = "name") -> list[dict[str, Any]]:
        """predict.py's row per example: the most probable label (its index, and its name under
        ``key``), its probability, and the ``predict_top_k`` most probable labels with theirs."""
        probs = logits.float().softmax(dim=1)
        top = probs.topk(min(self.predict_top_k, probs.shape[1]), dim=1)
        name = (lambda i: names[i]) if names else str
        return [{"label": int(i[0]), key: name(int(i[0])), "confidence": round(float(p[0]), 6),
                 "top_k": {name(int(j)): round(float(q), 6) for j, q in zip(i, p)}}
                for i, p in zip(top.indices.tolist(), top.values.tolist())]

"""Global magnitude pruning: which weights (layer types, minus named modules), how sparse they are,
the pruning step itself, and the callback that prunes while training (through Lightning's
``ModelPruning``: a gradual schedule, a resumed run keeps its masks); compress.py's recipes use
the same pieces after training."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelPruning
from torch import nn
from torch.nn.utils import prune

from src.core.errors import ConfigError
from src.core.prefix import under

Params = list[tuple[nn.Module, str]]


def prunable_weights(net: nn.Module, layer_types: Sequence[str] = ("Conv2d", "Linear"),
                     exclude: Sequence[str] = ()) -> Params:
    """``(module, "weight")`` of every module of ``layer_types`` (class names) in ``net``, except
    those inside a module named in ``exclude`` (``features.1`` excludes ``features.1.*``, not
    ``features.10``). Biases and norms are never
    pruned: they hold few parameters and pruning them costs accuracy for nothing."""
    found = [(name, m) for name, m in net.named_modules() if type(m).__name__ in layer_types
             and isinstance(getattr(m, "weight", None), torch.Tensor)]
    params = [(m, "weight") for name, m in found if not any(under(name, e) for e in exclude if e)]
    if not params:
        raise ConfigError(f"no {'/'.join(layer_types)} weights to prune in {type(net).__name__}"
                          f"{' outside ' + ', '.join(exclude) if exclude else ''}; fix layer_types or exclude")
    return params


def sparsity(params: Params) -> float:
    """Fraction of zero entries over the given weights (masked ones count as zero)."""
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in params)
    return zeros / sum(getattr(m, n).numel() for m, n in params)


def global_l1(params: Params, amount: float) -> None:
    """Mask the ``amount`` fraction of the still-unpruned entries of ``params`` with the smallest
    magnitude over all of them (global unstructured L1). torch's ``global_unstructured`` flattens
    with ``view``, which fails on channels-last weights; this keeps each weight's memory format."""
    weights = [getattr(m, n).detach() for m, n in params]
    masks = [getattr(m, n + "_mask", torch.ones_like(w)) for (m, n), w in zip(params, weights)]
    alive = torch.cat([mask.reshape(-1) for mask in masks]).bool()
    scores = torch.cat([w.abs().reshape(-1) for w in weights]).float()
    k = round(amount * int(alive.sum()))
    if k == 0:
        return
    scores[~alive] = float("inf")  # already pruned: not counted again
    alive[torch.topk(scores, k, largest=False).indices] = False
    start = 0
    for (module, name), w in zip(params, weights):
        mask = torch.empty_like(w).copy_(alive[start:start + w.numel()].reshape(w.shape))
        start += w.numel()
        if prune.is_pruned(module) and hasattr(module, name + "_mask"):
            prune.remove(module, name)  # the new mask includes the old one
        prune.custom_from_mask(module, name, mask)


def prune_once(net: nn.Module, amount: float, layer_types: Sequence[str] = ("Conv2d", "Linear"),
               exclude: Sequence[str] = ()) -> None:
    """Global L1 pruning of ``amount`` of the chosen weights in one shot, made permanent."""
    params = prunable_weights(net, layer_types, exclude)
    global_l1(params, amount)
    for m, n in params:
        prune.remove(m, n)


class MagnitudePruning(ModelPruning):
    """Global unstructured L1 pruning of the ``layer_types`` weights of the net, raised from 0 to
    ``sparsity`` along the cubic schedule of Zhu & Gupta (2017) between the fractions ``start`` and
    ``end`` of ``max_epochs``; the epochs after ``end`` fine-tune the sparse net. A step runs at the
    end of each epoch's validation (so the epoch's checkpoint holds it; a run needs its validation
    loop). Checkpoints hold plain (zeroed) weights, so they load into an unpruned net.

    ``lottery_ticket=True`` rewinds the surviving weights to their initial values after each
    pruning step (Frankle & Carbin 2019). It is off by default: Lightning's own default (on)
    would make prune-and-fine-tune end on rewound weights.
    """

    def __init__(self, sparsity: float = 0.9, start: float = 0.0, end: float = 0.5,
                 layer_types: Sequence[str] = ("Conv2d", "Linear"), exclude: Sequence[str] = (),
                 lottery_ticket: bool = False, verbose: int = 0) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ConfigError(f"pruning sparsity={sparsity} must be in [0, 1) (callbacks.pruning.sparsity, compression.sparsity)")
        if not 0.0 <= start <= end <= 1.0:
            raise ConfigError(f"pruning start={start}, end={end} must satisfy 0 <= start <= end <= 1 "
                              "(fractions of trainer.max_epochs)")
        # the pruning itself is global_l1 (see _apply_global_pruning); pruning_fn names it for Lightning
        super().__init__(pruning_fn="l1_unstructured", parameter_names=["weight"], use_global_unstructured=True,
                         amount=self._amount, use_lottery_ticket_hypothesis=lottery_ticket, verbose=verbose,
                         # after validation, before checkpointing: each checkpoint holds its epoch's pruning
                         prune_on_train_epoch_end=False)
        self.target, self.start, self.end = sparsity, start, end
        self.layer_types, self.exclude = tuple(layer_types), tuple(exclude)
        self.first_epoch = self.last_epoch = 0

    def _apply_global_pruning(self, amount: float) -> None:
        global_l1(self._parameters_to_prune, amount)

    def filter_parameters_to_prune(self, parameters_to_prune: Params = ()) -> Params:
        return prunable_weights(self._net, self.layer_types, self.exclude)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._net = getattr(pl_module, "net", pl_module)
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        self.first_epoch = int(self.start * epochs)
        self.last_epoch = max(self.first_epoch, math.ceil(self.end * epochs) - 1)
        super().setup(trainer, pl_module, stage)

    def scheduled(self, epoch: int) -> float:
        """The sparsity reached at the end of ``epoch``."""
        if epoch < self.first_epoch:
            return 0.0
        progress = min(1.0, (epoch - self.first_epoch + 1) / (self.last_epoch - self.first_epoch + 1))
        return self.target * (1 - (1 - progress) ** 3)

    def _amount(self, epoch: int) -> float:
        # torch's pruning takes the amount as a fraction of the weights still unpruned
        before, after = self.scheduled(epoch - 1), self.scheduled(epoch)
        return 0.0 if after <= before else 1 - (1 - after) / (1 - before)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A resumed run (its epoch restored by now): the checkpoint holds zeroed weights, not
        masks; mask the zeros again so the optimizer cannot revive them before the next step."""
        if trainer.ckpt_path and self.scheduled(trainer.current_epoch - 1) > 0:
            for module, name in self._parameters_to_prune:
                prune.custom_from_mask(module, name, mask=getattr(module, name) != 0)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        pl_module.log("train/sparsity", sparsity(self._parameters_to_prune), sync_dist=False)

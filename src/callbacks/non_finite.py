"""Stops a training run at its first non-finite loss, before any checkpoint is written from it."""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from src.core.errors import DivergenceError

#: "no non-finite value yet": larger than any batch index, so a minimum over processes finds the first one
_NONE = torch.iinfo(torch.int64).max


class NonFiniteGuard(Callback):
    """Watches the losses ``training_step`` returns (``loss``, or a GAN's ``d_loss`` and
    ``g_loss``): the first batch where one is NaN or infinite stops the run with a
    :class:`DivergenceError` (one line naming the batch, the loss and the likely fixes; exit 1; a
    failed job in a sweep).

    Each batch only keeps its (detached) losses: no operation, nothing waits for the accelerator.
    The losses kept are checked every
    ``trainer.log_every_n_steps`` batches (when Lightning reads the logged values anyway), at the
    end of each epoch and of training, and before every checkpoint is written, as a minimum over
    all processes, so every DDP rank stops at the same point. A checkpoint whose weights are not
    finite (an update that overflowed while its loss was still finite) is refused too: the
    checkpoints on disk hold the last finite state."""

    def __init__(self) -> None:
        #: the batch index and losses of every batch since the last check
        self._window: list[tuple[int, dict[str, torch.Tensor]]] = []
        #: every loss seen so far: each check reduces one value per name, the same on every process
        self._names: list[str] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._window, self._names = [], []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        index = trainer.fit_loop.epoch_loop.total_batch_idx
        losses = _losses(outputs)
        if losses:
            self._window.append((index, {name: loss.detach() for name, loss in losses.items()}))
        if (index + 1) % trainer.log_every_n_steps == 0:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The epoch's logged metrics are computed first, a collective each, on every process: rank 0's
        # progress bar computed them in an earlier epoch-end hook, the other ranks would only after
        # this hook, and their collectives would cross this check's reduce (a DDP deadlock)
        trainer.callback_metrics  # noqa: B018
        self._check(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._check(trainer, pl_module)
        # the parameters, not the whole state_dict: a metric's state may rightly be infinite (val/acc_best
        # starts at -inf until the first validation)
        weights = [p for p in pl_module.parameters() if p.is_floating_point()]
        if weights and not bool(torch.stack([torch.isfinite(p).all() for p in weights]).all()):
            raise DivergenceError(f"the weights became NaN or inf by training batch {trainer.fit_loop.epoch_loop.total_batch_idx} "
                                  f"(epoch {trainer.current_epoch}) while every loss was finite; the run stopped without "
                                  f"saving them (checkpoints/ keeps the last finite state): {_fixes(trainer, pl_module)}")

    def _check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise if a process saw a non-finite loss (a collective: every process calls it at the same point)."""
        window, self._window = self._window, []
        self._names = names = sorted({*self._names, *(name for _, losses in window for name in losses)})
        if not names:
            return
        device = pl_module.device
        # per loss, the first batch of the window where it was not finite (_NONE: none)
        first = torch.stack([
            torch.stack([torch.tensor(_NONE, device=device),
                         *(torch.where(torch.isfinite(losses[n]).all(), _NONE, i).to(device)
                           for i, losses in window if n in losses)]).min()
            for n in names])
        first = trainer.strategy.reduce(first, reduce_op="min").tolist()
        index = min(first)
        if index == _NONE:
            return
        bad = " and ".join(f"train/{n}" for n, i in zip(names, first) if i == index)
        per_epoch = trainer.num_training_batches
        where = f"training batch {index}" + (f" (epoch {index // per_epoch}, batch {index % per_epoch})"
                                             if isinstance(per_epoch, int) and per_epoch > 0 else "")
        raise DivergenceError(f"{bad} became NaN or inf at {where}; the run stopped without saving anything from "
                              f"there (checkpoints/ keeps the last finite state): {_fixes(trainer, pl_module)}")


def _losses(outputs: Any) -> dict[str, torch.Tensor]:
    """The losses among what ``training_step`` returned: ``loss`` and every ``*_loss`` tensor."""
    if isinstance(outputs, torch.Tensor):
        return {"loss": outputs}
    if not isinstance(outputs, dict):
        return {}
    return {k: v for k, v in outputs.items() if (k == "loss" or k.endswith("_loss")) and isinstance(v, torch.Tensor)}


def _fixes(trainer: Trainer, pl_module: LightningModule) -> str:
    """The settings that most often make a run diverge, as they stand in this run."""
    lr = "model.optimizer.lr" if len(trainer.optimizers) == 1 else "model.optimizer_*.lr"
    fixes = [f"lower the learning rate ({lr})"]
    if "16" in str(trainer.precision):
        fixes.append(f"train in 32-true or bf16-mixed instead of trainer.precision={trainer.precision}")
    if not (trainer.gradient_clip_val or pl_module.hparams.get("gradient_clip_val")):
        fixes.append("clip gradients (trainer.gradient_clip_val=1.0)")
    return ", ".join(fixes) + "; trainer.detect_anomaly=true finds the operation that made the first NaN"

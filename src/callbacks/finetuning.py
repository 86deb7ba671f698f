"""Freezing named modules of the net while a new head learns, then unfreezing them: the usual
fine-tuning schedule for a pre-trained backbone (``callbacks=[default,finetuning]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from src.core.errors import ConfigError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class FreezeUnfreeze(BaseFinetuning):
    """Keeps ``modules`` (names of submodules of the net: ``features``, ``image_encoder``) frozen
    until the start of epoch ``unfreeze_at_epoch`` (for the whole run when None).

    - Frozen parameters get no gradient, so no optimizer step changes them; they stay in the
      optimizer from the start (``build_optimizers`` passes every parameter, at its
      ``model.lr_scales`` rate), so unfreezing needs no new parameter group and a resumed run
      rebuilds the same optimizer.
    - ``train_bn=False``: the frozen modules' BatchNorm layers also stay in eval mode, normalising
      with the pre-trained statistics instead of those of the small fine-tuning batches (Lightning's
      own freeze would normalise with batch statistics while keeping the old running ones, so
      training and evaluation would disagree). ``True``: they keep adapting their statistics and
      affine parameters.
    - DDP registers only the parameters that require a gradient when it wraps the model, so
      modules frozen before wrapping (as Lightning's fine-tuning callbacks do) would never be
      averaged across processes once unfrozen: each process would drift on its own. When they
      will be unfrozen, they are frozen after the wrap instead, and DDP must be told that some
      parameters get no gradient (``task.ddp_find_unused_parameters=true``).
    """

    def __init__(self, modules: Sequence[str], unfreeze_at_epoch: int | None = None, train_bn: bool = False) -> None:
        super().__init__()
        if not modules:
            raise ConfigError("callbacks.finetuning.modules is empty; name the net's modules to freeze, e.g. [features]")
        if unfreeze_at_epoch is not None and unfreeze_at_epoch < 1:
            raise ConfigError(f"callbacks.finetuning.unfreeze_at_epoch={unfreeze_at_epoch} must be >= 1 (the first epoch "
                              "it trains), or null to keep the modules frozen")
        self.names, self.unfreeze_at_epoch, self.train_bn = list(modules), unfreeze_at_epoch, train_bn
        self.frozen = False

    def _modules(self, pl_module: LightningModule) -> list[nn.Module]:
        net = pl_module.net
        missing = [n for n in self.names if not isinstance(_submodule(net, n), nn.Module)]
        if missing:
            children = ", ".join(name for name, _ in net.named_children())
            raise ConfigError(f"callbacks.finetuning.modules: {type(net).__name__} has no module {missing} "
                              f"(its modules: {children}); name submodules of the net, e.g. features or features.0")
        return [_submodule(net, n) for n in self.names]

    def _freeze_after_wrap(self, trainer: Trainer) -> bool:
        return isinstance(trainer.strategy, DDPStrategy) and self.unfreeze_at_epoch is not None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._modules(pl_module)  # unknown names fail before any work
        if self._freeze_after_wrap(trainer):
            if not getattr(trainer.strategy, "_ddp_kwargs", {}).get("find_unused_parameters"):
                raise ConfigError("unfreezing modules under DDP needs task.ddp_find_unused_parameters=true: DDP must "
                                  "register the frozen parameters when it wraps the model and skip them while frozen")
            return
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._freeze_after_wrap(trainer):
            self.freeze_before_training(pl_module)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        self.freeze(self._modules(pl_module), train_bn=self.train_bn)
        self.frozen = True
        frozen = sum(p.numel() for m in self._modules(pl_module) for p in m.parameters())
        until = f"until epoch {self.unfreeze_at_epoch}" if self.unfreeze_at_epoch is not None else "for the whole run"
        log.info(f"Frozen {', '.join(self.names)} ({frozen:,} parameters) {until}")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # not BaseFinetuning's: it records parameter groups to re-create on resume, and none are added here
        self.finetune_function(pl_module, trainer.current_epoch, trainer.optimizers[0] if trainer.optimizers else None)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer | None) -> None:
        """Unfreeze at (or, resumed, after) ``unfreeze_at_epoch``; until then keep the frozen
        BatchNorm layers in eval mode (the fit loop may have put the net in train mode)."""
        if not self.frozen:
            return
        modules = self._modules(pl_module)
        if self.unfreeze_at_epoch is not None and epoch >= self.unfreeze_at_epoch:
            self.make_trainable(modules)
            for module in modules:
                module.train()
            self.frozen = False
            log.info(f"Epoch {epoch}: unfrozen {', '.join(self.names)}")
        elif not self.train_bn:
            for module in modules:
                for layer in module.modules():
                    if isinstance(layer, _BatchNorm):
                        layer.eval()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore: a resumed run freezes again and unfreezes at its first epoch start."""


def _submodule(net: nn.Module, name: str) -> nn.Module | None:
    try:
        return net.get_submodule(name)
    except AttributeError:
        return None

"""LightningModule for contrastive self-supervised pre-training of image encoders (SimCLR)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from src.core.errors import ConfigError
from src.data.views import RandomViews
from src.models.base import OptimizerFactory, SchedulerFactory
from src.models.classification import ClassificationModule
from src.models.nets.contrastive import ContrastiveNet

#: the seed of the views that validation and test draw: the same views every epoch, so val/loss compares epochs
EVAL_VIEWS_SEED = 0


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss: each of the 2N projections must pick out the other view of its image
    among the other 2N - 1 (cross-entropy over cosine similarities / ``temperature``), averaged
    over all 2N."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    similarity = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(similarity, partner)


class ContrastiveModule(ClassificationModule):
    """SimCLR (Chen et al. 2020): two random views of every training image (``views``,
    :class:`~src.data.views.RandomViews`), the net's projections of both, NT-Xent between them.
    Under DDP the projections of every process are gathered (with their gradients), so the
    negatives are the whole global batch, as in one process.

    The labels never reach the encoder: they train an online linear probe on its detached
    features (of the training views), which makes the representation's quality a metric:
    ``val/acc`` and ``test/acc`` are the probe's accuracy on the un-augmented images, and the
    probe is this module's classifier (confusion matrix, predictions). ``{stage}/loss`` is NT-Xent
    (at validation and test on views drawn from a fixed seed, negatives within each process's
    batch), ``{stage}/probe_loss`` the probe's cross-entropy.
    """

    IGNORED = [*ClassificationModule.IGNORED, "views"]
    task = "contrastive"

    def __init__(
        self,
        net: ContrastiveNet,
        num_classes: int,
        views: RandomViews,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        scheduler_monitor: str = "val/loss",
        temperature: float = 0.5,
        class_names: Sequence[str] | None = None,
        compile: bool = False,
        channels_last: bool = False,
        num_plot_images: int = 32,
        train_metrics_every: int = 1,
    ) -> None:
        if not isinstance(net, ContrastiveNet):
            raise ConfigError(f"model.net is a {type(net).__name__}; a contrastive model needs a ContrastiveNet "
                              "(src.models.nets.contrastive.ContrastiveNet, the classifier net as its encoder)")
        if not temperature > 0:
            raise ConfigError(f"model.temperature={temperature} must be > 0 (SimCLR uses 0.1-1)")
        super().__init__(net, num_classes, optimizer, scheduler, scheduler_interval, scheduler_monitor,
                         class_names=class_names, compile=compile, channels_last=channels_last,
                         num_plot_images=num_plot_images, train_metrics_every=train_metrics_every)
        self.views = views
        self.probe = nn.Linear(net.feature_dim, num_classes)
        self.train_probe_loss, self.val_probe_loss, self.test_probe_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self._eval_generator: torch.Generator | None = None

    def _net_logits(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.probe(net.encoder(x))

    def _reseed_views(self) -> None:
        self._eval_generator = torch.Generator(self.device).manual_seed(EVAL_VIEWS_SEED)

    def on_validation_epoch_start(self) -> None:
        self._reseed_views()

    def on_test_epoch_start(self) -> None:
        self._reseed_views()

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """NT-Xent of the batch's views and the probe's logits (of the views in training, of the
        images otherwise); returns (loss to minimise, probe logits)."""
        x, y = batch
        generator = None if stage == "train" else self._eval_generator
        features = self.net.encoder(torch.cat([self.views(x, generator), self.views(x, generator)]))
        z1, z2 = self.net.projector(features).chunk(2)
        if stage == "train" and self.trainer.world_size > 1:  # evaluation shares differ in size: no collectives there
            z1, z2 = (self.all_gather(z, sync_grads=True).flatten(0, 1) for z in (z1, z2))
        loss = nt_xent(z1, z2, self.hparams.temperature)
        if stage == "train":
            logits, targets = self.probe(features.detach()), y.repeat(2)
        else:
            logits, targets = self(x), y
        probe_loss = F.cross_entropy(logits, targets)
        getattr(self, f"{stage}_probe_loss").update(probe_loss)
        self._log_stage(stage, loss, logits.argmax(dim=1), targets)
        return loss + probe_loss, logits

    def _log_epoch(self, stage: str) -> None:
        super()._log_epoch(stage)
        self._log_updated({f"{stage}/probe_loss": getattr(self, f"{stage}_probe_loss")})

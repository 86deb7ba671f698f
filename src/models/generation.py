"""LightningModule for image generation with GANs: DCGAN (non-saturating loss), WGAN-GP
(Wasserstein loss, gradient penalty, several critic steps per generator step) and SAGAN (hinge
loss, spectral norm, self-attention). Sample quality is measured by
:mod:`src.metrics.image_quality`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.optim.swa_utils import AveragedModel
from torchmetrics.image.kid import KernelInceptionDistance
from torchvision.utils import save_image

from src.core.errors import ConfigError
from src.metrics.image_quality import DEFAULT_METRICS, ImageQualityMetrics
from src.models.base import (
    OptimizerFactory,
    SchedulerFactory,
    TaskModule,
    build_optimizers,
)
from src.models.ema import ema_average
from src.models.nets.gan import GAN
from src.utils.plots import log_figure, sample_grid_figure

LOSSES = ("nonsaturating", "wasserstein", "hinge")


@torch.no_grad()
def refresh_parametrizations(module: torch.nn.Module) -> None:
    """Recomputes every parametrized weight of ``module`` once in training mode: for spectral norm,
    one power iteration on the weight as it is now, updating its singular-vector buffers.

    The EMA generator needs it: ``AveragedModel`` averages the weights *and* the power-iteration
    vectors ``_u``, ``_v`` (buffers), and the average of unit vectors is not a singular vector of
    the averaged weight; in eval mode spectral norm only reads them. One iteration per update,
    warm-started from the previous vectors, keeps the EMA weight divided by its own largest
    singular value (as the live generator's is)."""
    for m in module.modules():
        if parametrize.is_parametrized(m):
            for name, plist in m.parametrizations.items():
                was_training = plist.training
                plist.train()
                getattr(m, name)
                plist.train(was_training)


class GenerationModule(TaskModule):
    """Adversarial training of ``net.generator`` against ``net.discriminator`` with Lightning's
    manual optimization: one discriminator (critic) step per batch, one generator step every
    ``n_critic`` batches, each under ``toggle_optimizer`` so the other net gets no gradients.
    ``loss``: ``nonsaturating`` (DCGAN), ``wasserstein`` (WGAN-GP, with ``gp_weight``) or ``hinge``
    (SAGAN); ``train/d_real`` and ``train/d_fake`` are D's mean probabilities for the first, its
    mean raw scores for the others.

    ``gradient_clip_val`` (``trainer.gradient_clip_val``, which Lightning applies to automatic
    optimization only) clips each optimizer's gradients before its step.

    An EMA copy of the generator (``g_ema``) makes the samples: the fixed-noise grid logged each
    epoch, the images scored by the metrics, and those ``eval.py`` writes.

    Metrics (``metrics`` dict, see :data:`DEFAULT_METRICS`): FID in a feature space named by
    ``feature``: ``classifier`` (penultimate layer of an archlab classifier checkpoint of the same
    dataset, offline), ``inception`` (FID's InceptionV3, needs its weights), ``pixels``; without
    a classifier checkpoint, FID falls back to pixels (with a warning) so ``val/fid`` (the watched
    metric) stays defined. ``val/fid``: val images vs as many samples. At test: FID and KID
    against the test set, the real-vs-real floor (as many training images vs the test set, same
    features), and with a classifier the class coverage of the samples.

    ``hparams`` hold plain values only, so checkpoints load with ``weights_only=True``.
    """

    IGNORED = ["net", "optimizer_g", "optimizer_d", "scheduler"]

    def __init__(
        self,
        net: GAN,
        num_classes: int,
        image_shape: list[int],
        latent_dim: int,
        conditional: bool = False,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        loss: str = "nonsaturating",
        gp_weight: float = 0.0,
        n_critic: int = 1,
        ema_decay: float = 0.999,
        metrics: Mapping[str, Any] | None = None,
        num_grid: int = 64,
        channels_last: bool = False,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
    ) -> None:
        super().__init__(net, scheduler=scheduler, scheduler_interval=scheduler_interval, scheduler_monitor=None,
                         channels_last=channels_last)
        if loss not in LOSSES:
            raise ConfigError(f"model.loss={loss!r} is not one of {', '.join(LOSSES)}")
        if scheduler_interval not in ("step", "epoch"):
            raise ConfigError(f"model.scheduler_interval={scheduler_interval!r} is not 'step' or 'epoch'")
        if n_critic < 1:
            raise ConfigError(f"model.n_critic={n_critic} must be >= 1")
        if (net.generator.latent_dim, net.generator.conditional) != (latent_dim, conditional):
            raise ConfigError(f"model.latent_dim={latent_dim} and model.conditional={conditional} disagree with the "
                              "generator's; interpolate them (${{model.latent_dim}}, ${{model.conditional}})")
        self.save_hyperparameters(logger=False, ignore=self.IGNORED)
        self.automatic_optimization = False
        self.optimizer_factories = {"g": optimizer_g, "d": optimizer_d}
        self.metrics_cfg = {**DEFAULT_METRICS, **(metrics or {})}
        self.g_ema = AveragedModel(net.generator, avg_fn=ema_average(ema_decay), use_buffers=True)
        self.g_ema.requires_grad_(False)
        # Fixed noise (and labels) for the per-epoch grid: buffers, so resumed runs keep them.
        self.register_buffer("fixed_z", torch.randn(num_grid, latent_dim, generator=torch.Generator().manual_seed(0)))
        self.register_buffer("fixed_labels", torch.arange(num_grid) % num_classes)
        # Built in setup(), outside the state_dict: checkpoints load without the classifier, and
        # a run can be scored with another one.
        self.quality: ImageQualityMetrics | None = None
        self._eval_rng: torch.Generator | None = None
        self._predicted = 0

    def optimization_factories(self) -> dict[str, Any]:
        return {"optimizer_g": self.optimizer_factories["g"], "optimizer_d": self.optimizer_factories["d"],
                "scheduler": self.scheduler_factory}

    # -- sampling ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> GenerationModule:
        """The EMA generator only samples: its BatchNorm always uses the averaged statistics."""
        super().train(mode)
        self.g_ema.eval()
        return self

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from the EMA generator."""
        return self.g_ema.module(z, labels if self.hparams.conditional else None)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.hparams.latent_dim, device=self.device, generator=generator)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor) -> torch.Tensor:
        """One EMA-generator image per label (the label is ignored when unconditional), with the
        evaluation noise stream: the same noise every epoch, untouched global RNG."""
        return self(self.noise(len(labels), self._eval_rng), labels)

    # -- setup ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.quality is None:
            self.quality = ImageQualityMetrics(self.metrics_cfg, self.hparams.image_shape, self.hparams.num_classes)

    def _features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.quality.features(images)

    def _start_eval_stream(self) -> None:
        # one stream per process: under DDP the processes sample different images, not copies
        self._eval_rng = torch.Generator(self.device).manual_seed(self.metrics_cfg["seed"] + self.global_rank)

    # -- training ---------------------------------------------------------------------------
    def _discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        d = self.net.discriminator
        d_real, d_fake = d(real, labels), d(fake, labels)
        if self.hparams.loss == "nonsaturating":
            out = {"d_loss": F.softplus(-d_real).mean() + F.softplus(d_fake).mean(),
                   "d_real": torch.sigmoid(d_real).mean(), "d_fake": torch.sigmoid(d_fake).mean()}
        elif self.hparams.loss == "hinge":
            # SAGAN's hinge loss: D is only pushed while a real score is below 1 or a fake one above -1
            out = {"d_loss": F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean(), "d_real": d_real.mean(),
                   "d_fake": d_fake.mean()}
        else:
            out = {"d_loss": d_fake.mean() - d_real.mean(), "d_real": d_real.mean(), "d_fake": d_fake.mean(),
                   "wasserstein": d_real.mean() - d_fake.mean()}
        if self.hparams.gp_weight > 0:
            out["gp"] = self._gradient_penalty(real, fake, labels)
            out["d_loss"] = out["d_loss"] + self.hparams.gp_weight * out["gp"]
        return out

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """WGAN-GP: (||grad_x D(x)|| - 1)^2 at random points between real and fake images."""
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.net.discriminator(mixed, labels).sum(), mixed, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).square().mean()

    def _generator_loss(self, fake: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        score = self.net.discriminator(fake, labels)
        # hinge and Wasserstein: G raises D's raw score of its samples
        return F.softplus(-score).mean() if self.hparams.loss == "nonsaturating" else -score.mean()

    def _schedulers(self) -> list[Any]:
        schedulers = self.lr_schedulers()
        return [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """One D step, and one G step every ``n_critic`` batches; returns the losses of the steps
        taken (what the non-finite guard watches)."""
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = y if self.hparams.conditional else None
        opt_g, opt_d = self.optimizers()
        schedulers = self._schedulers()
        step_schedulers = self.scheduler_interval == "step"

        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.net.generator(self.noise(len(x)), labels)
        d_out = self._discriminator_loss(x, fake, labels)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_out["d_loss"])
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        if step_schedulers and schedulers:
            schedulers[1].step()
        self.log_dict({f"train/{k}": v.detach() for k, v in d_out.items()}, on_step=True, on_epoch=True,
                      prog_bar=False, batch_size=len(x))

        # The first batch of every n_critic updates the generator too, so even a one-batch run
        # (fast_dev_run) steps both optimizers.
        if batch_idx % self.hparams.n_critic:
            return {"d_loss": d_out["d_loss"].detach()}
        self.toggle_optimizer(opt_g)
        g_loss = self._generator_loss(self.net.generator(self.noise(len(x)), labels), labels)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        if step_schedulers and schedulers:
            schedulers[0].step()
        self.g_ema.update_parameters(self.net.generator)
        refresh_parametrizations(self.g_ema.module)  # spectral norm of the averaged weights
        self.log("train/g_loss", g_loss.detach(), on_step=True, on_epoch=True, prog_bar=True, batch_size=len(x))
        return {"d_loss": d_out["d_loss"].detach(), "g_loss": g_loss.detach()}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip here, not after ``manual_backward``: under mixed precision the gradients are
        unscaled by now."""
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, self.hparams.gradient_clip_algorithm)

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            for scheduler in self._schedulers():
                scheduler.step()
        if self.trainer.is_global_zero:
            out = Path(self.trainer.default_root_dir) / "samples" / f"epoch_{self.current_epoch:03d}.png"
            self._log_grid("train/samples", out)

    def _log_grid(self, key: str, png: Path) -> None:
        with torch.no_grad():
            images = self(self.fixed_z, self.fixed_labels)
        log_figure(self.loggers, key, sample_grid_figure(images, nrow=round(math.sqrt(len(images)))), png)

    # -- validation / test ------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._start_eval_stream()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.quality.val_fid.update(self._features(x)[0], real=True)
        self.quality.val_fid.update(self._features(self.sample(y))[0], real=False)
        self.log("val/fid", self.quality.val_fid, on_step=False, on_epoch=True, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._start_eval_stream()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Loader 0: test images (real side of every metric) and as many samples; loader 1:
        training images, the other side of the real-vs-real floor."""
        x, y = batch
        features, logits = self._features(x)
        if dataloader_idx == 1:
            self.quality.floor_fid.update(features, real=False)
            self.quality.floor_kid.update(features, real=False)
            return
        for metric in (self.quality.test_fid, self.quality.floor_fid, self.quality.test_kid, self.quality.floor_kid):
            metric.update(features, real=True)
        fake_features, fake_logits = self._features(self.sample(y))
        self.quality.test_fid.update(fake_features, real=False)
        self.quality.test_kid.update(fake_features, real=False)
        if self.quality.coverage is not None:
            self.quality.coverage.update(fake_logits.argmax(dim=1), y)

    def _kid(self, kid: KernelInceptionDistance) -> torch.Tensor:
        # KID averages over subsets of subset_size samples; fewer samples (a debug run) use all.
        kid.subset_size = min(self.metrics_cfg["kid_subset_size"], sum(map(len, kid.real_features)),
                              sum(map(len, kid.fake_features)))
        return kid.compute()[0]

    def on_test_epoch_end(self) -> None:
        fid, floor = self.quality.test_fid.compute(), self.quality.floor_fid.compute()
        values = {"test/fid": fid, "test/fid_floor": floor, "test/fid_ratio": fid / floor.clamp(min=1e-12),
                  "test/kid": self._kid(self.quality.test_kid), "test/kid_floor": self._kid(self.quality.floor_kid)}
        if self.quality.coverage is not None:
            values.update({f"test/{k}": v for k, v in self.quality.coverage.compute().items()})
        for metric in (self.quality.test_fid, self.quality.floor_fid, self.quality.test_kid, self.quality.floor_kid, self.quality.coverage):
            if metric is not None:
                metric.reset()
        self.log_dict({k: v.float() for k, v in values.items()})
        if self.trainer.is_global_zero:
            self._log_grid("test/samples", Path(self.trainer.default_root_dir) / "samples.png")

    # -- predict (eval.py) ------------------------------------------------------------------
    def on_predict_epoch_start(self) -> None:
        self._start_eval_stream()
        self._predicted = 0

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        """Samples one image per label of the batch into ``<run dir>/samples/``; one row per
        image: its file, the label it was asked for (conditional models), and with a classifier
        the class it shows and the classifier's confidence."""
        _, y = batch
        images = self.sample(y)
        _, logits = self._features(images)
        folder = Path(self.trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for k, image in enumerate(images):
            # the test example's index: process r of W predicts examples r, r + W, ... (src/data/common.py)
            index = self.global_rank + (self._predicted + k) * self.trainer.world_size
            name = f"samples/{index:06d}.png"
            save_image(image, Path(self.trainer.default_root_dir) / name, normalize=True, value_range=(-1, 1))
            row: dict[str, Any] = {"file": name}
            if self.hparams.conditional:
                row["label"] = int(y[k])
            if logits is not None:
                conf, pred = logits[k].softmax(dim=0).max(dim=0)
                row.update(pred=int(pred), confidence=round(float(conf), 6))
            rows.append(row)
        self._predicted += len(images)
        return rows

    # -- optimizers -------------------------------------------------------------------------
    def configure_optimizers(self) -> list[Any]:
        """Generator first, then discriminator: each optimizer (and scheduler, from the same
        ``_partial_``) over its own net. Both are checkpointed and restored on resume."""
        return [build_optimizers(self, self.optimizer_factories[name], self.scheduler_factory,
                                 self.scheduler_interval, monitor=None, params=net.parameters(), suffix=f"_{name}")
                for name, net in (("g", self.net.generator), ("d", self.net.discriminator))]

"""Metrics logged once per epoch (and training metrics on every N-th batch) are the metrics of
the batches they claim: at ``train_metrics_every=1`` exactly what per-step logging gave."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from src.callbacks.progress import WatchedProgressBar
from src.core.errors import ConfigError
from src.models.classification import ClassificationModule
from src.models.nets.cnn import SimpleCNN
from src.models.regression import RegressionModule

CLASSES, BATCH, TRAIN_BATCHES = 4, 8, 7


class Recorded(ClassificationModule):
    """Keeps what every training batch added to the loss and metrics."""

    def __init__(self, **kwargs: Any) -> None:
        torch.manual_seed(0)
        super().__init__(SimpleCNN(1, CLASSES, image_size=8, channels=(4,), hidden=8), num_classes=CLASSES,
                         optimizer=lambda params: torch.optim.SGD(params, lr=0.05), **kwargs)
        self.batches: list[tuple[torch.Tensor, ...]] = []

    def _log_stage(self, stage: str, loss: torch.Tensor, *update: torch.Tensor) -> None:
        if stage == "train":
            self.batches.append((loss.detach().clone(), *(u.clone() for u in update)))
        super()._log_stage(stage, loss, *update)


class PerStepLogging(Recorded):
    """The logging every step did before metrics moved to the epoch ends."""

    def _log_stage(self, stage: str, loss: torch.Tensor, *update: torch.Tensor) -> None:
        super()._log_stage(stage, loss, *update)
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_step=False, on_epoch=True)
        self.log_dict(getattr(self, f"{stage}_metrics"), on_step=False, on_epoch=True)

    def _log_epoch(self, stage: str) -> None:
        pass


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(BATCH * (TRAIN_BATCHES + 3), 1, 8, 8, generator=g), torch.randint(0, CLASSES, (BATCH * (TRAIN_BATCHES + 3),), generator=g)
    train = TensorDataset(images[: BATCH * TRAIN_BATCHES], labels[: BATCH * TRAIN_BATCHES])
    val = TensorDataset(images[BATCH * TRAIN_BATCHES:], labels[BATCH * TRAIN_BATCHES:])
    return DataLoader(train, batch_size=BATCH), DataLoader(val, batch_size=BATCH)


def fit(module: Recorded, tmp_path: Any) -> dict[str, float]:
    trainer = Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2,
                      default_root_dir=tmp_path)
    trainer.fit(module, *loaders())
    return {k: float(v) for k, v in trainer.logged_metrics.items()}


def test_metrics_at_every_step_values_are_the_per_step_logging_ones(tmp_path: Any) -> None:
    ours, before = fit(Recorded(train_metrics_every=1), tmp_path), fit(PerStepLogging(), tmp_path)
    assert set(ours) == set(before) == {"train/loss", "train/acc", "train/f1", "val/loss", "val/acc", "val/f1",
                                        "val/acc_best"}
    assert ours == before


@pytest.mark.parametrize("every", [1, 3])
def test_training_metrics_cover_every_nth_batch_and_the_loss_every_batch(tmp_path: Any, every: int) -> None:
    module = Recorded(train_metrics_every=every)
    logged = fit(module, tmp_path)
    assert len(module.batches) == 2 * TRAIN_BATCHES
    losses, preds, targets = zip(*module.batches[TRAIN_BATCHES:])  # the last epoch's, which were logged last
    assert logged["train/loss"] == pytest.approx(float(torch.stack(losses).mean()), rel=1e-6)
    due = slice(None, None, every)  # batches 0, N, 2N, ... of the epoch
    preds, targets = torch.cat(preds[due]), torch.cat(targets[due])
    assert logged["train/acc"] == pytest.approx(float(MulticlassAccuracy(CLASSES, average="micro")(preds, targets)))
    assert logged["train/f1"] == pytest.approx(float(MulticlassF1Score(CLASSES, average="macro")(preds, targets)))
    # validation: every batch (the sanity check's batches not among them), by the trained net
    _, val = loaders()
    module.eval()
    with torch.no_grad():
        pairs = [(module(x).argmax(1), y) for x, y in val]
    val_preds, val_targets = torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])
    assert logged["val/acc"] == pytest.approx(float(MulticlassAccuracy(CLASSES, average="micro")(val_preds, val_targets)))


def test_train_metrics_every_below_one_is_one_line() -> None:
    with pytest.raises(ConfigError, match="train_metrics_every=0 must be an integer >= 1"):
        Recorded(train_metrics_every=0)


def test_progress_bar_redraws_once_per_interval_and_at_each_loops_last_batch(tmp_path: Any,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[str, int]] = []
    for hook in ("on_train_batch_end", "on_validation_batch_end"):
        monkeypatch.setattr(RichProgressBar, hook, lambda self, *args, hook=hook, **kw: drawn.append((hook, args[4])))
    bar = WatchedProgressBar("val/acc", min_interval=3600)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, callbacks=[bar],
                      enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.fit(Recorded(), *loaders())
    # the first batch (nothing drawn yet), then only each loop's last: the bar ends full
    assert drawn == [("on_train_batch_end", 0), ("on_train_batch_end", TRAIN_BATCHES - 1), ("on_validation_batch_end", 2)]


def test_a_run_resumed_after_its_epochs_last_batch_logs_no_empty_metric(tmp_path: Path) -> None:
    """Validating twice an epoch, the checkpoint is written after the epoch's last batch, before
    the epoch ends: the resumed run ends that epoch with no training batch. Its metrics are empty
    (R2 of nothing raises, a mean of nothing is NaN) and are not logged."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(56, 1, 8, 8, generator=g), torch.randn(56, generator=g)
    data = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8), DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8)

    def run(epochs: int, **kwargs: Any) -> None:
        module = RegressionModule(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), train_metrics_every=2,
                                  optimizer=lambda params: torch.optim.SGD(params, lr=0.01))
        Trainer(max_epochs=epochs, accelerator="cpu", val_check_interval=0.5, enable_progress_bar=False,
                enable_model_summary=False, logger=CSVLogger(tmp_path, name="csv"), default_root_dir=tmp_path,
                callbacks=[ModelCheckpoint(dirpath=tmp_path, filename="last", enable_version_counter=False)],
                ).fit(module, *data, **kwargs)

    run(1)
    run(2, ckpt_path=tmp_path / "last.ckpt")
    rows = [row for path in sorted(tmp_path.rglob("metrics.csv")) for row in csv.DictReader(path.open())]
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)  # epoch 0 (first run), epoch 1 (resumed)

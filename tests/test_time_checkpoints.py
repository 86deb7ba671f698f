"""TimeCheckpoints: the state at marks of training wall time, under manual optimization (a GAN,
where Lightning's ModelCheckpoint(train_time_interval=...) never fires) as benchmarks/gan_quality.py
--equal-time reads it."""

import sys
from pathlib import Path

import pytest

from src.callbacks.time_checkpoints import TimeCheckpoints
from src.core.errors import ConfigError
from tests.conftest import ROOT
from train import train

sys.path.insert(0, str(ROOT / "benchmarks"))
from gan_quality import early_stopped, updates


def test_gan_checkpoints_at_each_mark(cfg_train, tmp_path: Path) -> None:
    # marks a few microseconds apart: the first and second batches end past them
    cfg = cfg_train("model=dcgan", "data=digits", "model.metrics.feature=pixels", "trainer.limit_train_batches=3",
                    "trainer.limit_val_batches=1", "test=false", "model.net.generator.channels=[16,8]",
                    "model.net.discriminator.channels=[8,16]", "callbacks=[default,time_checkpoints]",
                    "callbacks.time_checkpoints.minutes=[1e-8,1e-9]")
    train(cfg)
    folder = tmp_path / "run" / "checkpoints"
    # the state after batch 1, then after batch 2: one G and one D update per batch
    assert updates(folder / "minute_1e-09.ckpt") == {"g_updates": 1, "d_updates": 1, "epoch": 0}
    assert updates(folder / "minute_1e-08.ckpt") == {"g_updates": 2, "d_updates": 2, "epoch": 0}
    assert updates(folder / "last.ckpt")["g_updates"] == 3 and not early_stopped(folder / "last.ckpt")


@pytest.mark.parametrize("minutes", [[], [5, 0]])
def test_marks_must_be_positive_minutes(minutes: list[float]) -> None:
    with pytest.raises(ConfigError, match="minutes=.*must be one or more minutes > 0"):
        TimeCheckpoints(minutes, "unused")

"""Resuming with overrides that change what the checkpoint's state was built for: a longer run
stretches its learning-rate schedule (the curve continues) or stops in one line saying how to
train on."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from src.utils.config import compose
from tests.conftest import FAST
from train import train

GAN_ONE_CYCLE = ["model=dcgan", "data=digits", "model.metrics.feature=pixels", "data.batch_size=16",
                 "model.net.generator.channels=[16,8]", "model.net.discriminator.channels=[8,16]",
                 "model.scheduler_interval=step",
                 "+model.scheduler={_target_: torch.optim.lr_scheduler.OneCycleLR, _partial_: true, max_lr: 0.001}"]


class LearningRates(Callback):
    """The learning rate of each optimizer's first group at the start of every training batch."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.lrs.append([opt.param_groups[0]["lr"] for opt in trainer.optimizers])


def run(overrides: list[str], folder: Path, stop_after: int | None = None) -> list[list[float]]:
    """Train in ``folder``; the learning rates it trained with."""
    cfg = compose("train", [*FAST, *overrides], folder)
    with open_dict(cfg):
        cfg.callbacks.lrs = {"_target_": "tests.test_resume.LearningRates"}
        if stop_after:
            cfg.callbacks.stop = {"_target_": "tests.conftest.StopAfterEpochs", "epochs": stop_after}
    _, objects = train(cfg)
    (lrs,) = [c for c in objects["trainer"].callbacks if isinstance(c, LearningRates)]
    return lrs.lrs


@pytest.mark.parametrize(("overrides", "stretched"), [
    (["model=cnn"], ["train/lr"]),  # one-cycle, per step
    (["model=dense", "model/scheduler=cosine", "model.scheduler_interval=step"], ["train/lr"]),
    (["model=dense"], []),  # reduce on plateau: nothing laid out over the run's length
    (GAN_ONE_CYCLE, ["train/lr_g", "train/lr_d"]),  # a GAN's two schedulers
], ids=["one_cycle", "cosine", "plateau", "gan"])
def test_a_longer_resume_continues_the_schedule(overrides: list[str], stretched: list[str], tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Interrupted after epoch 1 of 2, resumed for 3 epochs: the learning rate goes on from where
    it was, without a jump, decreasing to the schedule's end."""
    caplog.set_level("INFO")
    common = [*overrides, "trainer.limit_train_batches=5", "trainer.limit_val_batches=1", "test=false"]
    before = run([*common, "trainer.max_epochs=2"], tmp_path / "first", stop_after=1)
    after = run([*common, "trainer.max_epochs=3", f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}"],
                tmp_path / "resumed")
    assert len(before) == 5 and len(after) == 10
    lines = [r.getMessage() for r in caplog.records if " schedule stretched from " in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == stretched
    assert all("stretched from 10 to 15 steps: from step 5" in line for line in lines), lines
    for k in range(len(before[0])):
        curve = [lrs[k] for lrs in before + after]
        steps = [abs(a - b) for a, b in pairwise(curve)]
        j = len(before)  # steps[j - 1]: to the rate restored from the checkpoint; steps[j]: the first one stretched
        assert steps[j - 1] <= 1.5 * max(steps[:j - 1]) + 1e-12, curve  # the restored rate is the schedule's next one
        assert steps[j] <= 1.05 * steps[j - 1] + 1e-12, curve  # the stretched schedule goes on no faster
        if stretched:
            assert curve[-1] < 0.01 * max(curve) and curve[len(before) - 1:] == sorted(curve[len(before) - 1:], reverse=True)


def test_a_finished_schedule_resumed_for_longer_is_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's run: 2 epochs of one-cycle done, resumed with trainer.max_epochs=4 (torch's
    'Tried to step 21 times' traceback before)."""
    common = ["trainer.limit_train_batches=10", "trainer.limit_val_batches=1", "test=false"]
    run([*common, "trainer.max_epochs=2"], tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    caplog.set_level("INFO")
    with pytest.raises(SystemExit) as e:
        run([*common, "trainer.max_epochs=4", f"ckpt_path={last}"], tmp_path / "first")
    assert e.value.code == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(f"CheckpointError: ckpt_path={last} has run its one-cycle schedule of 20 steps to step 20 "), line
    assert line.endswith(f"train longer from its weights with a new schedule: init=checkpoint init.path={last} "
                         "trainer.max_epochs=2"), line
    assert "Traceback" not in caplog.text


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """A run of 2 epochs (10 batches each) stopped after the first: its overrides, its last.ckpt
    (which the tests resume elsewhere, leaving it as it is)."""
    folder = tmp_path_factory.mktemp("interrupted")
    common = ["trainer.limit_train_batches=10", "trainer.limit_val_batches=1", "test=false", "trainer.max_epochs=2"]
    run(common, folder, stop_after=1)
    return common, folder / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(("override", "message"), [
    ("model.net.hidden=64", "does not fit this model: net.classifier.1.weight is [128, "),
    ("model.lr_scales={features: 0.1}", "holds optimizers of [1] parameter groups, this run builds [2] (model.lr_scales"),
    ("model.optimizer._target_=torch.optim.SGD", "holds the state of another optimizer class than this run's"),
], ids=["net shape", "lr_scales", "optimizer class"])
def test_a_resume_override_that_breaks_restored_state_is_one_line(override: str, message: str, interrupted,
                                                                   tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """torch's size-mismatch list, 'different number of parameter groups' or KeyError tracebacks before."""
    common, last = interrupted
    caplog.set_level("INFO")
    with pytest.raises(SystemExit) as e:
        run([*common, override, f"ckpt_path={last}"], tmp_path / "resumed")
    assert e.value.code == 1
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(f"CheckpointError: ckpt_path={last} ") and message in line, line
    assert line.endswith(f"init=checkpoint init.path={last}") and "Traceback" not in caplog.text


def test_resume_names_the_settings_its_restored_state_replaces(interrupted, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Lightning restores the optimizer and schedule: a new learning rate on resume used to be dropped silently."""
    common, last = interrupted
    caplog.set_level("INFO")
    run([*common, "model.optimizer.lr=0.1", "model.scheduler.pct_start=0.3", f"ckpt_path={last}"], tmp_path / "resumed")
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "Resuming restores" in r.getMessage()]
    assert line == (f"Resuming restores the optimizer and schedule state of ckpt_path={last}: model.optimizer.lr=0.1, "
                    "model.scheduler.max_lr=0.1, model.scheduler.pct_start=0.3 do not apply (the restored state keeps "
                    f"the trained run's values); for new settings from its weights: init=checkpoint init.path={last}")

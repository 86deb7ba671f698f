"""Runs that used to finish "successfully" with nothing to show: a watched metric never logged,
a test that ran no batch, a classifier that predicts one class for everything."""

from __future__ import annotations

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from train import train

SHORT = ["trainer.limit_train_batches=5", "model.scheduler=null"]


def one_error_line(cfg, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level("INFO")
    with pytest.raises(SystemExit) as e:
        train(cfg)
    assert e.value.code == 1 and "Traceback" not in caplog.text
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    return line


@pytest.mark.parametrize(("overrides", "message"), [
    # Lightning's EarlyStopping raised a RuntimeError (a traceback) in both
    (["task.watch.metric=val/accc"], "ConfigError: early stopping watches val/accc, which was never logged (logged: "),
    (["trainer.limit_val_batches=0"], ("ConfigError: early stopping watches val/acc, which validation logs, and "
                                       "validation ran no batch (trainer.limit_val_batches=0")),
    # the test was skipped and the run ended with exit 0 and no test metric
    (["trainer.limit_test_batches=0"], ("ConfigError: trainer.limit_test_batches=0 leaves the test no batch, so no "
                                        "test metric was computed; to skip testing, set test=false")),
], ids=["metric typo", "no validation", "no test"])
def test_a_run_that_measures_nothing_is_one_line(overrides: list[str], message: str, cfg_train,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    line = one_error_line(cfg_train(*SHORT, *overrides), caplog)
    assert line.startswith(message), line


class ConstantOutput(Callback):
    """Makes the classifier's last layer output class 3 for every input before testing."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last = pl_module.net.classifier[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), len(last.bias)).float())


def test_a_collapsed_classifier_is_named(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    cfg = cfg_train(*SHORT)
    with open_dict(cfg):
        cfg.callbacks.constant = {"_target_": "tests.test_run_outcomes.ConstantOutput"}
    caplog.set_level("INFO")
    metrics, _ = train(cfg)
    assert float(metrics["test/acc"]) == pytest.approx(0.1, abs=0.01)  # class 3's share: nothing else said so
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "Every test prediction" in r.getMessage()]
    assert line.startswith("Every test prediction is class '3' though the test set holds 10 classes"), line

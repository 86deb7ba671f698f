"""A run that goes wrong says so: a non-finite loss or weight stops the run in one line (exit 1,
in a sweep a failed job), and nothing is saved from the diverged state."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from tests.conftest import QUIET, run_cli, run_dirs
from train import train

DIVERGING = ["model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=1e6"]
GAN = ["model=dcgan", "data=digits", "model.metrics.feature=pixels", "data.batch_size=16",
       "model.net.generator.channels=[16,8]", "model.net.discriminator.channels=[8,16]"]


class PoisonWeights(Callback):
    """Fills one weight of ``module`` with NaN at ``batch`` of ``epoch``: before the batch (its
    loss is NaN) or after it (the weights are NaN, the batch's loss was finite)."""

    def __init__(self, epoch: int, batch: int, module: str = "net", after: bool = False) -> None:
        self.epoch, self.batch, self.module, self.after = epoch, batch, module, after

    def _poison(self, trainer: Trainer, pl_module: LightningModule, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            with torch.no_grad():
                next(pl_module.get_submodule(self.module).parameters()).fill_(float("nan"))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if not self.after:
            self._poison(trainer, pl_module, batch_idx)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.after:
            self._poison(trainer, pl_module, batch_idx)


def fails_in_one_line(cfg, caplog: pytest.LogCaptureFixture) -> str:
    """Train ``cfg``: it must exit 1 with one logged error line and no traceback; returns the line."""
    caplog.set_level("INFO")
    with pytest.raises(SystemExit) as e:
        train(cfg)
    assert e.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0] and "Traceback" not in caplog.text, caplog.text
    assert list(Path(cfg.paths.output_dir).glob("csv/version_0/*"))  # the run's folder and logs stay
    return errors[0]


def poisoned(cfg, **poison):
    with open_dict(cfg):
        cfg.callbacks.poison = {"_target_": "tests.test_divergence.PoisonWeights", **poison}
    return cfg


def test_a_diverging_run_stops_in_one_line(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    """The issue's run (SGD at lr 1e6) trained 3 epochs on NaN weights, tested, and exited 0."""
    cfg = cfg_train(*DIVERGING, "trainer.max_epochs=3")
    line = fails_in_one_line(cfg, caplog)
    assert line.startswith("DivergenceError: train/loss became NaN or inf at training batch "), line
    assert "(epoch 0, batch " in line and "model.optimizer.lr" in line and "trainer.gradient_clip_val" in line
    assert not list(Path(cfg.paths.output_dir).rglob("*.ckpt")) and "Starting testing" not in caplog.text


def test_the_guard_turns_off(cfg_train) -> None:
    """callbacks.non_finite=null: the diverged run trains and tests on NaN weights, as it did before the guard."""
    metrics, _ = train(cfg_train(*DIVERGING, "callbacks.non_finite=null", "trainer.limit_train_batches=8"))
    assert torch.isnan(metrics["test/loss"])


def test_last_checkpoint_keeps_the_last_finite_state(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    cfg = poisoned(cfg_train("trainer.max_epochs=3", "trainer.log_every_n_steps=1"), epoch=1, batch=2)
    line = fails_in_one_line(cfg, caplog)
    assert "train/loss became NaN or inf at training batch" in line and "(epoch 1, batch 2)" in line, line
    last = torch.load(Path(cfg.paths.output_dir, "checkpoints", "last.ckpt"), weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_non_finite_weights_are_never_saved(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    """The last update of epoch 0 overflows the weights while its loss was finite: the checkpoint
    that would hold them is refused."""
    cfg = poisoned(cfg_train("trainer.limit_train_batches=3"), epoch=0, batch=2, after=True)
    line = fails_in_one_line(cfg, caplog)
    assert line.startswith("DivergenceError: the weights became NaN or inf by training batch 2 (epoch 0)"), line
    assert not list(Path(cfg.paths.output_dir).rglob("*.ckpt"))


def test_an_infinite_metric_state_is_no_divergence(cfg_train, tmp_path: Path) -> None:
    """A checkpoint written before any validation holds val/acc_best's starting -inf: the weights
    are finite, so it is saved (the GPU suite's compiled VQA run was stopped by this)."""
    train(cfg_train("trainer.limit_val_batches=0", "callbacks.early_stopping=null", "callbacks.model_checkpoint.monitor=null",
                    "test=false"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["val_acc_best.max_value"] == float("-inf")


def test_a_gans_losses_are_watched(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    cfg = poisoned(cfg_train(*GAN, "trainer.limit_train_batches=4", "trainer.log_every_n_steps=1"),
                   epoch=0, batch=1, module="net.discriminator")
    line = fails_in_one_line(cfg, caplog)
    assert "train/d_loss and train/g_loss became NaN or inf at training batch 1 (epoch 0, batch 1)" in line, line
    assert "model.optimizer_*.lr" in line


@pytest.mark.slow  # a sweep of two training jobs in a subprocess
def test_a_diverging_job_fails_and_the_sweep_goes_on(tmp_path: Path) -> None:
    proc = run_cli(["train.py", "-m", *DIVERGING[:1], "model.optimizer.lr=1e6,0.05", "trainer.max_epochs=1",
                    "trainer.limit_train_batches=8", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                    f"paths.log_dir={tmp_path}", *QUIET])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "DivergenceError: train/loss became NaN or inf" in out, out[-3000:]
    diverged, finished = run_dirs(tmp_path)
    assert (diverged / "train.log").exists()
    assert not (diverged / "summary.json").exists() and not list(diverged.rglob("*.ckpt"))
    assert (finished / "summary.json").exists() and (finished / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow  # two processes
def test_ddp_every_rank_stops(tmp_path: Path) -> None:
    proc = run_cli(["train.py", "trainer=ddp_cpu", *DIVERGING, "trainer.max_epochs=3", f"paths.log_dir={tmp_path}",
                    *QUIET], timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert out.count("DivergenceError: train/loss became NaN or inf at training batch") == 1, out[-3000:]


class GradNorms(Callback):
    """Records the gradient norm of each of a GAN's nets after its optimizer stepped."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        for net in (pl_module.net.generator, pl_module.net.discriminator):
            self.norms.append(float(torch.stack([p.grad.norm() for p in net.parameters() if p.grad is not None]).norm()))


def test_a_gan_clips_its_gradients_with_the_trainer_setting(cfg_train) -> None:
    """Lightning refuses trainer.gradient_clip_val under manual optimization; the GAN clips both
    of its optimizers' gradients with it."""
    cfg = cfg_train(*GAN, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
                    "trainer.gradient_clip_val=0.001")
    with open_dict(cfg):
        cfg.callbacks.norms = {"_target_": "tests.test_divergence.GradNorms"}
    _, objects = train(cfg)
    (norms,) = [c for c in objects["trainer"].callbacks if isinstance(c, GradNorms)]
    assert len(norms.norms) == 4 and max(norms.norms) <= 0.001 * 1.01, norms.norms

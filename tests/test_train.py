"""End-to-end training through ``train(cfg)``: learning, resume, checkpoints."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.core import checkpoints
from src.models.classification import ClassificationModule
from src.models.nets.cnn import SimpleCNN
from src.utils.instantiate import instantiate_component
from tests.conftest import (
    QUIET,
    final_weights,
    full_interrupted_resumed,
    metrics_csv,
    run_cli,
    run_dirs,
)
from train import train


def test_default_run_learns_digits(cfg_train) -> None:
    """The default `python train.py` (CNN on digits) generalises after 3 epochs."""
    metrics, objects = train(cfg_train("trainer.max_epochs=3"))
    assert metrics["test/acc"] > 0.9, metrics
    out = Path(objects["cfg"].paths.output_dir)
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert (out / "test_predictions.png").stat().st_size > 1000
    assert (out / "checkpoints" / "last.ckpt").exists()


def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    """A 2-epoch run == the same run interrupted after epoch 1 and resumed from last.ckpt (bit
    for bit), with dropout and random-crop augmentation so the RNG state must be restored too,
    and a one-cycle schedule whose position must be restored."""
    common = [*QUIET, "trainer.deterministic=true", "data.augment=crop", "model.net.dropout=0.5", "trainer.max_epochs=2",
              "test=false"]
    full, interrupted, resumed = full_interrupted_resumed(common, tmp_path)
    a, b = final_weights(full), final_weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert "val_acc_best.max_value" in a  # the best-so-far survives the interruption too
    # and the interrupted run really was at epoch 1, not a copy of the full run
    c = final_weights(interrupted)
    assert not torch.equal(a["net.classifier.4.weight"], c["net.classifier.4.weight"])


def test_last_checkpoint_follows_a_plateau(cfg_train, tmp_path: Path) -> None:
    """last.ckpt is the latest epoch even when the watched metric stops improving (lr=0: the
    second epoch's val/acc equals the first's, so no new best checkpoint is written)."""
    metrics, objects = train(cfg_train("trainer.max_epochs=2", "model.optimizer.lr=0", "model.scheduler=null", "test=false"))
    checkpoints = Path(objects["cfg"].paths.output_dir) / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]


def test_checkpoint_loads_weights_only(cfg_train, tmp_path: Path) -> None:
    metrics, objects = train(cfg_train())
    ckpt_path = Path(objects["cfg"].paths.output_dir) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # raises on any pickled object
    assert ckpt["archlab"]["config"]["model"]["net"]["_target_"] == "src.models.nets.cnn.SimpleCNN"
    net = SimpleCNN(1, 10, image_size=8)
    module = ClassificationModule.load_from_checkpoint(ckpt_path, net=net, weights_only=True)
    trained = objects["model"].net.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in module.net.state_dict().items())


def test_returns_optimized_metric_for_sweeps(cfg_train) -> None:
    from src.utils.run import get_metric_value

    metrics, _ = train(cfg_train())
    assert 0.0 <= get_metric_value(metrics, "val/acc_best") <= 1.0


def test_channels_last_setting_reaches_the_net() -> None:
    module = ClassificationModule(SimpleCNN(1, 10, image_size=8), num_classes=10, channels_last=True)
    convs = [p for p in module.net.parameters() if p.dim() == 4 and p.shape[1] > 1]  # 1 channel: both layouts agree
    assert convs and not any(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    module.setup("fit")
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


# Written by archlab before one-name-per-task (commit dab7785): `python train.py
# "model.net.channels=[4,8]" model.net.hidden=16 trainer.max_epochs=1`, test/acc 37/360.
FORMAT1 = Path(__file__).parent / "data" / "format1_cnn_digits.ckpt"


@pytest.mark.slow  # trains, then resumes a format-1 file; format 2's real file stays in the default suite
def test_checkpoint_of_the_previous_format_is_upgraded(tmp_path: Path) -> None:
    """A format-1 checkpoint (task 'image_classification', the old DataModule class, the
    scheduler's 'monitor') is upgraded on load, its weights load into today's model, and eval.py
    reproduces the test accuracy it was saved with."""
    ckpt = checkpoints.load(FORMAT1)
    meta = ckpt["archlab"]
    assert meta["version"] == 3 and meta["config"]["task"]["name"] == "classification"
    assert meta["config"]["data"]["provides"]["tasks"] == ["classification"] and "task" not in meta["config"]["model"]
    assert meta["config"]["data"]["_target_"] == "src.data.classification.ClassificationDataModule"
    assert ckpt["hyper_parameters"]["scheduler_monitor"] == "val/loss" and "monitor" not in ckpt["hyper_parameters"]
    instantiate_component(OmegaConf.create(meta["config"]["model"])).load_state_dict(ckpt["state_dict"])
    proc = run_cli(["eval.py", f"ckpt_path={FORMAT1}", f"paths.log_dir={tmp_path}", "extras.print_config=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    assert float(metrics_csv(run)["test/acc"]) == pytest.approx(37 / 360)


# Written by archlab before the task/data/model split (commit e2bade9): `python train.py model=dcgan
# data=digits_generation "model.net.generator.channels=[8,4]" "model.net.discriminator.channels=[4,8]"
# model.latent_dim=8 trainer.max_epochs=1 trainer.limit_train_batches=4 trainer.limit_val_batches=1
# trainer.limit_test_batches=1 model.metrics.kid_subset_size=8 model.metrics.kid_subsets=2`, test/fid 46.2094.
FORMAT2 = Path(__file__).parent / "data" / "format2_dcgan_digits.ckpt"


@pytest.mark.slow  # keeps the default suite under 10 minutes
def test_checkpoint_of_format_2_is_upgraded(tmp_path: Path) -> None:
    """A format-2 checkpoint (the model config's task and watched metric, a data twin) is upgraded
    on load: metadata in ``task``, the twin's new name, and eval.py reproduces the test FID it was
    saved with (on the same one test batch)."""
    meta = checkpoints.load(FORMAT2)["archlab"]
    config = meta["config"]
    assert meta["version"] == 3 and config["task"] == {"name": "generation", "watch": {"metric": "val/fid", "mode": "min"},
                                                       "search_space": {"model.optimizer_g.lr": "interval(0.00005, 0.0005)",
                                                                        "model.optimizer_d.lr": "interval(0.00005, 0.0005)"},
                                                       "ddp_find_unused_parameters": True}
    assert not {"task", "watch", "search_space", "ddp_find_unused_parameters"} & set(config["model"])
    assert meta["choices"]["data"] == "digits" and meta["choices"]["task"] == "generation"
    assert config["data"]["provides"]["tasks"] == ["generation"]
    proc = run_cli(["eval.py", f"ckpt_path={FORMAT2}", f"paths.log_dir={tmp_path}", "trainer.limit_test_batches=1",
                    "extras.print_config=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    assert float(metrics_csv(run)["test/fid"]) == pytest.approx(46.2094, abs=1e-3)


@pytest.mark.parametrize("timer", [[], ["~callbacks.timer"]], ids=["timer_callback", "no_timer_callback"])
def test_max_time_ends_training(cfg_train, timer: list[str]) -> None:
    """``trainer.max_time`` stops a run whether or not the default Timer callback is there (which
    enforces it: Lightning ignores the Trainer's own beside a Timer)."""
    cfg = cfg_train("model=cnn", "data=digits", *timer, "trainer.max_epochs=200", "trainer.max_time=00:00:00:01", "test=false")
    _, objects = train(cfg)
    assert 0 < objects["trainer"].current_epoch < 200

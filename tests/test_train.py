"""End-to-end training through ``train(cfg)``: every model x data pair, resume, checkpoints."""

from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from src.data import classification
from src.models.classification import ClassificationModule
from src.models.nets.cnn import SimpleCNN
from tests.conftest import compose_cfg
from tests.test_configs import compatible_pairs
from train import train


@pytest.fixture
def synthetic_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace torchvision downloads with random images of each dataset's real shape, so the
    model x data matrix runs in seconds and without the files (real data: test_real_data.py)."""
    shapes = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

    def fake(name: str, root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(int(train))
        n = 96 if train else 32
        targets = torch.arange(n) % 10
        return torch.randint(0, 256, (n, *shapes[name]), dtype=torch.uint8, generator=g), targets

    monkeypatch.setattr(classification, "load_torchvision", fake)


@pytest.mark.parametrize(("model", "data"), compatible_pairs("image_classification"))
def test_fast_dev_run(model: str, data: str, cfg_train, synthetic_torchvision) -> None:
    overrides = [f"model={model}", f"data={data}", "trainer.fast_dev_run=true", "data.batch_size=16",
                 "data.num_workers=0", "data.val_size=16"]
    if model == "resnet":
        overrides.append("model.net.width=8")
    metrics, objects = train(cfg_train(*overrides))
    assert torch.isfinite(metrics["train/loss"]) and "test/acc" in metrics


def test_default_run_learns_digits(cfg_train) -> None:
    """The default `python train.py` (CNN on digits) generalises after 3 epochs."""
    metrics, objects = train(cfg_train("trainer.max_epochs=3"))
    assert metrics["test/acc"] > 0.9, metrics
    out = Path(objects["cfg"].paths.output_dir)
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert (out / "test_predictions.png").stat().st_size > 1000
    assert (out / "checkpoints" / "last.ckpt").exists()


class StopAfterEpochs(Callback):
    """Simulates an interrupted run: stops after ``epochs`` epochs (last.ckpt is written)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.should_stop = trainer.current_epoch + 1 >= self.epochs


def final_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True)["state_dict"]


def full_interrupted_resumed(common: list[str], tmp_path: Path) -> tuple[Path, Path, Path]:
    """Run ``common`` for its epochs uninterrupted; again stopped after epoch 1; then resumed
    from that run's last.ckpt. Returns the three last.ckpt paths."""
    train(compose_cfg("train", common, tmp_path / "full"))
    first = compose_cfg("train", common, tmp_path / "first")
    with open_dict(first):
        first.callbacks.stop = {"_target_": "tests.test_train.StopAfterEpochs", "epochs": 1}
    train(first)
    interrupted = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(interrupted, weights_only=True)["epoch"] == 0
    train(compose_cfg("train", [*common, f"ckpt_path={interrupted}"], tmp_path / "resumed"))
    return tmp_path / "full" / "checkpoints" / "last.ckpt", interrupted, tmp_path / "resumed" / "checkpoints" / "last.ckpt"


def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    """A 2-epoch run == the same run interrupted after epoch 1 and resumed from last.ckpt (bit
    for bit), with dropout and random-crop augmentation so the RNG state must be restored too,
    and a one-cycle schedule whose position must be restored."""
    common = ["trainer.deterministic=true", "data.augment=crop", "model.net.dropout=0.5", "trainer.max_epochs=2",
              "trainer.enable_progress_bar=false", "extras.print_config=false",
              "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "test=false"]
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

"""The regression task: images turned by seeded angles, a net that learns the angle, the run's
metrics in degrees, and predict.py's values."""

from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from src.core.errors import ConfigError
from src.data.classification import ClassificationDataModule
from src.data.regression import RegressionDataModule, rotate
from src.utils.config import compose
from tests.test_predict import run_predict, save_png
from train import train

DIGITS = {"tasks": ["regression"], "image_shape": [1, 8, 8], "num_classes": 10}


def test_rotate_turns_as_torchvision_does() -> None:
    """Counter-clockwise for positive angles, exact at right angles, torchvision's convention."""
    images = torch.randint(0, 256, (3, 1, 7, 7), dtype=torch.uint8)
    turned = rotate(images, torch.tensor([90.0, -90.0, 180.0]))
    assert torch.equal(turned[0], torch.rot90(images[0], 1, (1, 2)))
    assert torch.equal(turned[1], torch.rot90(images[1], -1, (1, 2)))
    assert torch.equal(turned[2], torch.rot90(images[2], 2, (1, 2)))
    dot = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    dot[0, 0, 1, 4] = 255
    assert torch.equal(rotate(dot, torch.tensor([90.0])), TF.rotate(dot, 90.0))


def test_angles_are_seeded_and_in_range(tmp_path: Path) -> None:
    """The same angles in every run (so under DDP every process agrees), other ones in the test
    split, within max_angle, and the images really turned."""
    def built(seed: int) -> RegressionDataModule:
        dm = RegressionDataModule("digits", DIGITS, str(tmp_path), split_seed=seed, max_angle=30.0)
        dm.setup("fit")
        return dm

    a, b, c = built(42), built(42), built(7)
    angles = a.data_train.dataset.targets
    assert angles.is_floating_point() and angles.abs().max() <= 30.0 and angles.std() > 10.0
    assert torch.equal(angles, b.data_train.dataset.targets) and not torch.equal(angles, c.data_train.dataset.targets)
    assert not torch.equal(angles[:100], a.data_test.targets[:100])
    plain, _ = ClassificationDataModule._load(a, train=True)  # the same files, not turned
    assert not torch.equal(a.data_train.dataset.images, plain)


def test_bad_max_angle_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.max_angle=0 must be in \(0, 180\] degrees"):
        RegressionDataModule("digits", DIGITS, str(tmp_path), max_angle=0)


def test_cnn_learns_the_angle_and_predicts_it(tmp_path: Path) -> None:
    """A few epochs on digits bring the test error well under a constant guess's (22.5 degrees for
    angles uniform in [-45, 45]); predict.py gives a PNG of a test image the test loop's value."""
    run = tmp_path / "run"
    cfg = compose("train", ["model=cnn_regressor", "data=digits", "trainer.max_epochs=4", "extras.print_config=false",
                            "trainer.enable_progress_bar=false", "callbacks.rich_progress_bar=null",
                            "callbacks.model_summary=null"], run)
    metrics, objects = train(cfg)
    assert cfg.task.name == "regression" and 0 <= float(metrics["test/mae"]) < 11.25, metrics
    assert float(metrics["test/r2"]) > 0.5
    module, dm = objects["model"].eval(), objects["datamodule"]
    images, _ = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        expected = module(images[:3]).tolist()
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        save_png(dm.data_test.images[i], folder / f"{i}.png")
    rows = run_predict(tmp_path, run / "checkpoints" / "last.ckpt", f"inputs={folder}")
    assert [r["value"] for r in rows] == pytest.approx(expected, abs=1e-3)

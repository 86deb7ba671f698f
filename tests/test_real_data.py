"""Integration on the real MNIST archives from DATA_DIR (a writable copy of ../shared/data)."""

from pathlib import Path

import pytest

from src.utils.config import compose
from tests.conftest import QUIET
from train import train


@pytest.mark.slow  # real MNIST through torchvision's archives: integration, not a unit
def test_mnist_from_data_dir_learns(mnist_dir: Path, tmp_path: Path) -> None:
    """200 steps of the CNN on real MNIST, then the full 10k test set: >= 97 %."""
    cfg = compose("train", [
        *QUIET, "data=mnist", f"data.data_dir={mnist_dir}", "trainer.max_epochs=1",
        "trainer.limit_train_batches=200", "trainer.limit_val_batches=10",
    ], tmp_path)
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (55000, 5000, 10000)
    assert metrics["test/acc"] >= 0.97, metrics

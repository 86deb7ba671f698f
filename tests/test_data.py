"""ClassificationDataModule: splits, shapes, and clear errors for bad data or settings."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.data.classification import ClassificationDataModule
from src.utils.errors import ConfigError, DataError

DIGITS = {"task": "classification", "image_shape": [1, 8, 8], "num_classes": 10}


def test_digits_splits_are_disjoint_and_seeded() -> None:
    dm = ClassificationDataModule("digits", DIGITS, batch_size=32, val_size=0.1)
    dm.setup()
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (1293, 144, 360)
    assert not set(dm.data_train.indices) & set(dm.data_val.indices)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    again = ClassificationDataModule("digits", DIGITS, val_size=0.1)
    again.setup()
    assert again.data_val.indices == dm.data_val.indices


def test_global_batch_is_split_across_devices() -> None:
    dm = ClassificationDataModule("digits", DIGITS, batch_size=64)
    dm.trainer = SimpleNamespace(world_size=2)
    dm.setup()
    assert dm.batch_size_per_device == 32
    odd = ClassificationDataModule("digits", DIGITS, batch_size=63)
    odd.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ConfigError, match="not divisible by the 2 devices"):
        odd.setup()


def test_wrong_provides_declaration_is_caught() -> None:
    dm = ClassificationDataModule("digits", {**DIGITS, "image_shape": [1, 28, 28]})
    with pytest.raises(DataError, match="declares image_shape=\\[1, 28, 28\\]"):
        dm.setup()


def test_missing_dataset_says_where_to_put_it(tmp_path: Path) -> None:
    dm = ClassificationDataModule("mnist", {**DIGITS, "image_shape": [1, 28, 28]}, data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError) as e:
        dm.prepare_data()
    assert f"{tmp_path}/MNIST/raw" in str(e.value) and "DATA_DIR" in str(e.value)


def test_corrupt_archive_is_reported(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00garbage")
    dm = ClassificationDataModule("mnist", {**DIGITS, "image_shape": [1, 28, 28]}, data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError, match="MNIST files in .*MNIST/raw are corrupt or incomplete"):
        dm.setup()


def test_validation_split_must_leave_training_images() -> None:
    dm = ClassificationDataModule("digits", DIGITS, val_size=5000)
    with pytest.raises(ConfigError, match="data.val_size=5000 leaves -3563 of the 1437 training images"):
        dm.setup()


def test_unknown_dataset_and_augment() -> None:
    with pytest.raises(DataError, match="unknown dataset 'svhn'.*src/data/sources/images.py"):
        ClassificationDataModule("svhn", DIGITS)
    with pytest.raises(ConfigError, match="data.augment='mixup' is not one of crop, crop_flip, jitter, none"):
        ClassificationDataModule("digits", DIGITS, augment="mixup")


def test_evaluation_set_smaller_than_the_process_count_is_refused() -> None:
    """Under DDP a process without evaluation examples would leave the others waiting forever."""
    from src.data.common import loader

    two_processes = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(ConfigError, match="an evaluation set of 1 examples cannot be shared by 2 processes"):
        loader([0], 1, two_processes, train=False, collate_fn=list, num_workers=0, pin_memory=False)

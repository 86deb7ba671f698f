"""ClassificationDataModule: splits, shapes, and clear errors for bad data or settings."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from src.core.errors import ConfigError, DataError
from src.data.classification import ClassificationDataModule

DIGITS = {"tasks": ["classification"], "image_shape": [1, 8, 8], "num_classes": 10}


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


def test_batch_loader_serves_what_the_dataloader_serves() -> None:
    """``data.loader=batches`` (the default) and ``items``: identical evaluation batches, and the
    same training examples each epoch, in batches of the same sizes."""
    items = ClassificationDataModule("digits", DIGITS, batch_size=100, loader="items")
    batches = ClassificationDataModule("digits", DIGITS, batch_size=100, loader="batches")
    for dm in (items, batches):
        dm.setup()
    for name in ("val_dataloader", "test_dataloader", "predict_dataloader"):
        ours, theirs = list(getattr(batches, name)()), list(getattr(items, name)())
        assert len(ours) == len(theirs) == len(getattr(batches, name)())
        for (x, y), (x_ref, y_ref) in zip(ours, theirs):
            assert torch.equal(y, y_ref) and torch.allclose(x, x_ref)
    epoch = [list(batches.train_dataloader()), list(batches.train_dataloader())]
    reference = torch.cat([y for _, y in items.train_dataloader()])
    for served in epoch:
        assert [len(y) for _, y in served] == [100] * 12 + [93]
        assert torch.equal(torch.cat([y for _, y in served]).sort().values, reference.sort().values)
    assert not torch.equal(epoch[0][0][1], epoch[1][0][1])  # reshuffled every epoch


def test_batch_loader_shards_like_the_distributed_sampler() -> None:
    """Two processes: equal training shares covering the split (disjoint but for the one example
    that pads 1,293 to an even count), reshuffled by set_epoch; every evaluation example once."""
    shares = []
    for rank in (0, 1):
        dm = ClassificationDataModule("digits", DIGITS, batch_size=64)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, strategy=SimpleNamespace(root_device=torch.device("cpu")))
        dm.setup()
        train = dm.train_dataloader()
        first = torch.cat([y for _, y in train])
        train.sampler.set_epoch(1)
        shares.append((list(train.sampler), first, torch.cat([y for _, y in train]),
                       sum(len(y) for _, y in dm.val_dataloader())))
    (idx0, *_, val0), (idx1, *_, val1) = shares
    assert len(idx0) == len(idx1) == 647 and len(set(idx0) & set(idx1)) == 1
    assert len(set(idx0) | set(idx1)) == len(dm.data_train)
    assert not torch.equal(shares[0][1], shares[0][2])  # set_epoch reshuffles
    assert val0 + val1 == len(dm.data_val)


@pytest.mark.parametrize("augment", ["crop", "crop_flip", "jitter"])
def test_batch_augmentation_matches_the_per_image_transform(augment: str) -> None:
    """Each image of a batch gets its own shift (and flip), drawn from the ones the per-image
    transform can make: the batched crop of every image equals one of the per-image crops."""
    from src.data.common import AUGMENTATIONS, random_crop_batch

    images = torch.randint(1, 256, (64, 1, 8, 8), dtype=torch.uint8)
    out = AUGMENTATIONS[augment].batch(8)(images)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padding = {"crop": 1, "crop_flip": 1, "jitter": 2}[augment]
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    for image, crop in zip(padded, out):
        candidates = [image[:, dy: dy + 8, dx: dx + 8] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
        candidates += [c.flip(-1) for c in candidates] if augment == "crop_flip" else []
        assert any(torch.equal(crop, c) for c in candidates)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1  # not one shift for the whole batch
    assert torch.equal(random_crop_batch(images, 0), images)


def test_unknown_loader_is_one_line() -> None:
    with pytest.raises(ConfigError, match="data.loader='fast' is not one of batches, items"):
        ClassificationDataModule("digits", DIGITS, loader="fast")


@pytest.mark.parametrize("kind", ["batches", "items"])
def test_test_batch_is_the_start_of_the_test_loader(kind: str) -> None:
    """compress.py's calibration and timing inputs: the first test examples as the test loader
    serves them, in one batch of the size asked for (all of them when asked for more)."""
    dm = ClassificationDataModule("digits", DIGITS, batch_size=100, loader=kind)
    dm.setup()
    (x, y), (x_ref, y_ref) = dm.test_batch(7), next(iter(dm.test_dataloader()))
    assert torch.equal(y, y_ref[:7]) and torch.allclose(x, x_ref[:7])
    assert len(dm.test_batch(10_000)[1]) == len(dm.data_test)

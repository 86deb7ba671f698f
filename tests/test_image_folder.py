"""data=image_folder: a user's folder (or CSV/JSONL index) of images of any size and mode, one
command from files to a trained and evaluated model; its one-line errors; k-fold cross-validation
(data.num_folds, data.fold) and compare.py's mean ± std over folds; CSV summarization pairs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from src.core.errors import ConfigError, DataError
from src.data.classification import ClassificationDataModule
from src.data.sources import image_folder
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import FAST, assert_eval_reproduces, run_cli

CLASSES = ("cat", "dog", "fish")
MODES = ("L", "RGB", "RGBA", "P")


def write_image(path: Path, label: int, mode: str, rng: np.random.Generator) -> Path:
    """A small image of a random size; each class has its own brightness (learnable)."""
    w, h = (int(v) for v in rng.integers(6, 30, 2))
    array = (rng.random((h, w, 3)) * 50 + label * 90).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return path


def make_folder(root: Path, n: int = 10, modes: tuple[str, ...] = MODES, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: ``n`` images a class, of mixed sizes and modes."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        for i in range(n):
            write_image(root / name / f"{i}.{'jpg' if modes[i % len(modes)] in ('L', 'RGB') and i % 3 == 0 else 'png'}",
                        label, modes[i % len(modes)], rng)
    return root


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test writes its own folders, maybe at a path an earlier test used."""
    image_folder.load_folder.cache_clear()
    image_folder.folder_splits.cache_clear()
    yield


def folder_cfg(tmp_path: Path, *overrides: str):
    (tmp_path / "run").mkdir(exist_ok=True)
    return compose("train", [*FAST, "data=image_folder", "data.image_size=12", "data.batch_size=8", *overrides],
                   tmp_path / "run")


def datamodule(cfg) -> ClassificationDataModule:
    dm = instantiate_component(cfg.data)
    dm.setup()
    return dm


def test_provides_come_from_the_files(tmp_path: Path) -> None:
    """Class names, count and image shape (3 channels as soon as one image is colour; 1 when all
    are grayscale), the statistics of the training split; the seeded splits are disjoint, the
    test split stratified, and every image decoded to image_size x image_size."""
    cfg = folder_cfg(tmp_path, f"data.root={make_folder(tmp_path / 'mixed')}")
    provides = cfg.data.provides
    assert (list(provides.class_names), provides.num_classes, list(provides.image_shape)) == (list(CLASSES), 3, [3, 12, 12])
    assert len(cfg.data.mean) == len(cfg.data.std) == 3 and all(0 < m < 1 for m in cfg.data.mean)
    dm = datamodule(cfg)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (22, 2, 6)
    assert not set(dm.data_train.indices) & set(dm.data_val.indices)
    assert torch.bincount(dm.data_test.targets).tolist() == [2, 2, 2]
    assert dm.data_test.images.shape[1:] == (3, 12, 12) and dm.data_test.images.dtype == torch.uint8
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 12, 12) and abs(float(x.mean())) < 0.5  # normalised by the folder's own statistics

    gray = folder_cfg(tmp_path, f"data.root={make_folder(tmp_path / 'gray', modes=('L',))}")
    assert list(gray.data.provides.image_shape) == [1, 12, 12]


def test_training_pixels_are_what_predict_reads(tmp_path: Path) -> None:
    """The decoded images equal predict.py's reading of the same files (same resize and crop)."""
    from src.data.inputs import read_image

    root = make_folder(tmp_path / "imgs", n=4)
    folder = image_folder.load_folder(str(root), None, 12)
    images, labels = folder.splits["all"]
    files = sorted((root / "dog").iterdir())
    first_dog = int((labels == 1).nonzero()[0])
    assert torch.equal(images[first_dog], read_image(files[0], (3, 12, 12)))


def test_a_named_dataset_is_one_yaml(tmp_path: Path) -> None:
    """configs/data/<name>.yaml = defaults [image_folder, _self_] + root (here on a search path)."""
    (tmp_path / "configs" / "data").mkdir(parents=True)
    root = make_folder(tmp_path / "pets", n=4, modes=("L",))
    (tmp_path / "configs" / "data" / "pets.yaml").write_text(f"defaults:\n  - image_folder\n  - _self_\n\nroot: {root}\n")
    cfg = compose("train", [*FAST, "data=pets", f"hydra.searchpath=[file://{tmp_path / 'configs'}]"])
    assert cfg.data.provides.num_classes == 3 and list(cfg.data.provides.image_shape) == [1, 32, 32]


def test_train_val_test_folders_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "split"
    for split, n, seed in (("train", 6, 0), ("val", 2, 1), ("test", 3, 2)):
        make_folder(root / split, n=n, seed=seed)
    dm = datamodule(folder_cfg(tmp_path, f"data.root={root}"))
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (18, 6, 9)
    val = dm.data_val.dataset.targets[dm.data_val.indices]
    assert torch.bincount(val).tolist() == [2, 2, 2]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_index_file(tmp_path: Path, kind: str) -> None:
    """data.index: path,label rows, paths relative to the index; a split column keeps the user's split."""
    rng = np.random.default_rng(0)
    rows = [{"path": f"imgs/{i}.png", "label": ["ant", "bee"][i % 2], "split": "test" if i >= 16 else "train"}
            for i in range(20)]
    for i, row in enumerate(rows):
        write_image(tmp_path / "set" / row["path"], i % 2, MODES[i % 4], rng)
    index = tmp_path / "set" / f"index.{kind}"
    if kind == "csv":
        index.write_text("path,label,split\n" + "".join(f"{r['path']},{r['label']},{r['split']}\n" for r in rows))
    else:
        index.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = folder_cfg(tmp_path, f"data.index={index}", "data.val_size=4")
    assert list(cfg.data.provides.class_names) == ["ant", "bee"]
    dm = datamodule(cfg)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (12, 4, 4)


def test_bad_folders_are_one_line(tmp_path: Path) -> None:
    def error(root, index=None):
        image_folder.load_folder.cache_clear()
        with pytest.raises((DataError, ConfigError)) as e:
            image_folder.load_folder(str(root) if root else None, index, 12)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "data.root=" in error(tmp_path / "missing") and "does not exist" in error(tmp_path / "missing")
    assert "needs data.root=DIR" in error(None)
    (tmp_path / "empty").mkdir()
    assert "holds no images" in error(tmp_path / "empty")
    write_image(tmp_path / "loose" / "a.png", 0, "L", np.random.default_rng(0))
    assert "images but no class folders" in error(tmp_path / "loose")
    root = make_folder(tmp_path / "hollow", n=2)
    (root / "zebra").mkdir()
    assert f"class folder {root / 'zebra'} holds no images" in error(root) and "remove the folder" in error(root)
    assert "does not exist" in error(None, str(tmp_path / "nope.csv"))
    (tmp_path / "bad.csv").write_text("path,label\nx.png,\n")
    assert "row 1 lacks a path or a label" in error(None, str(tmp_path / "bad.csv"))


@pytest.mark.slow  # train.py in a subprocess; the same lines are checked in-process above
def test_a_bad_folder_stops_the_command_in_one_line(tmp_path: Path) -> None:
    """Through train.py as a user runs it (the config tree printed: the resolver runs early)."""
    root = make_folder(tmp_path / "hollow", n=2)
    (root / "zebra").mkdir()
    proc = run_cli(["train.py", "data=image_folder", f"data.root={root}", f"paths.log_dir={tmp_path / 'logs'}",
                    "trainer.enable_progress_bar=false"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if "Error:" in line]
    assert len(errors) == 1 and f"DataError: class folder {root / 'zebra'} holds no images" in errors[0], out[-3000:]


def test_unreadable_images_are_skipped_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_folder(tmp_path / "broken", n=6)
    good = (root / "cat" / "1.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "garbage.jpg").write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING):
        cfg = folder_cfg(tmp_path, f"data.root={root}")
        assert cfg.data.provides.num_classes == 3
        dm = datamodule(cfg)
        datamodule(cfg)  # a second DataModule (eval after train) reads the cached images
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 unreadable or truncated images of 20" in warnings[0], warnings
    assert len(dm.data_train) + len(dm.data_val) + len(dm.data_test) == 18


@pytest.mark.parametrize("model", ["cnn", "dcgan", "simclr", "cnn_regressor"])
def test_models_run_on_a_folder_unchanged(model: str, tmp_path: Path) -> None:
    """One batch of each stage: the GAN, contrastive and regression tasks read the same folder."""
    from train import train

    extra = ["model.metrics.feature=pixels", "data.image_size=16"] if model == "dcgan" else []
    cfg = folder_cfg(tmp_path, f"model={model}", f"data.root={make_folder(tmp_path / 'imgs')}", "trainer.fast_dev_run=true",
                     "data.val_size=6", *extra)
    metrics, _ = train(cfg)
    assert any(k.startswith("test/") for k in metrics), metrics


def test_folder_trains_and_eval_reproduces_the_test_metric(tmp_path: Path) -> None:
    """A folder -> train.py (1 epoch) -> eval.py from the checkpoint alone: the same test metrics."""
    from train import train

    root = make_folder(tmp_path / "imgs")
    metrics, objects = train(folder_cfg(tmp_path, f"data.root={root}", "model=dense"))
    image_folder.load_folder.cache_clear()  # eval reads the files again, as a new process would
    image_folder.folder_splits.cache_clear()
    assert_eval_reproduces(metrics, objects["trainer"].checkpoint_callback.best_model_path, tmp_path / "eval")


# -- k-fold cross-validation ----------------------------------------------------------------------------
DIGITS = {"tasks": ["classification"], "image_shape": [1, 8, 8], "num_classes": 10}


def test_folds_partition_the_training_split_stratified() -> None:
    """data.num_folds=5: the five validation folds are disjoint, cover the training split, keep
    the class proportions and each leaves the rest for training; the test split is untouched."""
    plain = ClassificationDataModule("digits", DIGITS)
    plain.setup()
    n = len(plain.data_train) + len(plain.data_val)
    overall = torch.bincount(plain.data_val.dataset.targets, minlength=10).double() / n
    seen: list[int] = []
    folds = []
    for fold in range(5):
        dm = ClassificationDataModule("digits", DIGITS, num_folds=5, fold=fold)
        dm.setup()
        train_idx, val_idx = dm.data_train.indices, dm.data_val.indices
        assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == n
        assert torch.equal(dm.data_test.images, plain.data_test.images)
        share = torch.bincount(dm.data_val.dataset.targets[val_idx], minlength=10).double() / len(val_idx)
        assert (share - overall).abs().max() < 0.01  # stratified
        seen += val_idx
        folds.append(val_idx)
    assert sorted(seen) == list(range(n))
    again = ClassificationDataModule("digits", DIGITS, num_folds=5, fold=3)  # seeded by split_seed
    again.setup()
    assert again.data_val.indices == folds[3]


def test_folds_of_real_valued_targets() -> None:
    """Regression's angles: unstratified folds, still a partition."""
    from src.data.images import fold_indices

    angles = torch.linspace(-45, 45, 23)
    vals = [fold_indices(angles, 4, k, 0)[1] for k in range(4)]
    assert sorted(i for v in vals for i in v) == list(range(23))


def test_fold_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"data.fold=5 is out of range for data.num_folds=5; pick 0..4"):
        ClassificationDataModule("digits", DIGITS, num_folds=5, fold=5)
    with pytest.raises(ConfigError, match=r"data.num_folds=1 must be a whole number of at least 2"):
        ClassificationDataModule("digits", DIGITS, num_folds=1)
    with pytest.raises(ConfigError, match=r"data.root is not a setting of dataset=digits"):
        ClassificationDataModule("digits", DIGITS, root="x")


def fake_run(folder: Path, fold: int, acc: float) -> Path:
    """A finished run folder as train.py leaves it, as far as compare.py reads it."""
    (folder / ".hydra").mkdir(parents=True)
    config = {"seed": 12345, "task": {"watch": {"metric": "val/acc", "mode": "max"}}, "data": {"num_folds": 5, "fold": fold}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": "cnn", "data": "image_folder"}}}}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["data.num_folds=5", f"data.fold={fold}"]))
    (folder / "summary.json").write_text(json.dumps({"test/acc": acc, "best/val/acc": acc + 0.01}))
    return folder


def test_compare_gives_mean_and_std_over_folds(tmp_path: Path) -> None:
    accs = [0.80, 0.82, 0.84, 0.86, 0.88]
    for fold, acc in enumerate(accs):
        fake_run(tmp_path / "sweep" / str(fold), fold, acc)
    proc = run_cli(["compare.py", str(tmp_path / "sweep")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Mean ± std over folds" in proc.stdout
    import pandas as pd

    (row,) = pd.read_csv(tmp_path / "sweep" / "comparison_over_seeds.csv").to_dict("records")
    assert row["n"] == 5 and row["test/acc"] == f"{np.mean(accs):.4g} ± {np.std(accs, ddof=1):.2g}"


# -- summarization pairs from a CSV ---------------------------------------------------------------------
def test_summarization_pairs_from_csv(tmp_path: Path) -> None:
    import csv

    from src.data.sources.text_pairs import local_split_file, read_jsonl
    from tests.conftest import synthetic_pairs

    rows = synthetic_pairs(6)
    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["article", "highlights"])  # no id column: ids are made up
        writer.writeheader()
        writer.writerows({"article": r["article"], "highlights": r["highlights"]} for r in rows)
    path = local_split_file(tmp_path, "train")
    pairs = read_jsonl(path)
    assert path.name == "train.csv" and pairs.articles == [r["article"] for r in rows]
    assert pairs.highlights == [r["highlights"] for r in rows]  # the newline inside a quoted field survives
    (tmp_path / "test.csv").write_text("text,summary\na,b\n")
    with pytest.raises(DataError, match="has no article or highlights column"):
        read_jsonl(tmp_path / "test.csv")


def test_summarization_trains_from_csv_files(tmp_path: Path) -> None:
    """data=cnn_dailymail with train/validation/test.csv: one batch of each stage."""
    import csv

    from tests.conftest import synthetic_pairs
    from train import train

    folder = tmp_path / "pairs"
    folder.mkdir()
    for split, seed in (("train", 0), ("validation", 1), ("test", 2)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, ["id", "article", "highlights"])
            writer.writeheader()
            writer.writerows(synthetic_pairs(24 if split == "train" else 8, seed=seed))
    (tmp_path / "run").mkdir()
    cfg = compose("train", [*FAST, "data=cnn_dailymail", f"data.data_dir={folder}", "model=lead3", "train=false"],
                  tmp_path / "run")
    metrics, _ = train(cfg)
    assert 0 < float(metrics["test/rouge1"]) <= 1, metrics

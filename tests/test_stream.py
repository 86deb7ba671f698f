"""data.loader=stream: image datasets written once as litdata chunks (reused while their settings
hold), evaluated exactly as the in-memory loaders evaluate, trained through train.py on one
process and under DDP (each process its own shard), resumed mid-epoch as if never stopped; a
folder of images is written one file at a time."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from PIL import Image

from src.data.classification import ClassificationDataModule
from src.data.sources import image_folder
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import FAST, metrics_csv, run_ok
from tests.test_sweep_resume import TINY, assert_sigterm_resume_is_exact
from train import train

DIGITS = {"tasks": ["classification"], "image_shape": [1, 8, 8], "num_classes": 10}


def digits(data_dir: Path, **kwargs) -> ClassificationDataModule:
    dm = ClassificationDataModule("digits", DIGITS, data_dir=str(data_dir), **{"batch_size": 64, **kwargs})
    dm.prepare_data()
    dm.setup()
    return dm


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_chunks_are_written_once_and_reused_while_the_settings_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = digits(tmp_path, loader="stream")
    where = first._stream_dir()
    assert where.parent == tmp_path / "streams" and where.name.startswith("digits-")
    written = files(where)
    assert {Path(f).parts[0] for f in written} == {"train", "val", "test"} and all(
        (where / split / "index.json").is_file() for split in ("train", "val", "test"))
    with monkeypatch.context() as m:  # reading settings: the same chunks, and the dataset is not read again
        m.setattr(ClassificationDataModule, "_stream_splits", lambda self: pytest.fail("the dataset was read again"))
        digits(tmp_path, loader="stream", augment="crop", batch_size=32)
    assert files(where) == written
    others = {digits(tmp_path, loader="stream", **change)._stream_dir()
              for change in ({"val_size": 0.2}, {"split_seed": 1}, {"label_fraction": 0.5}, {"num_folds": 5, "fold": 1})}
    assert len(others) == 4 and where not in others and all(d.is_dir() for d in others)
    assert not list((tmp_path / "streams").glob("*.tmp-*"))  # every write renamed into place


def test_a_killed_write_is_not_taken_for_chunks(tmp_path: Path) -> None:
    """A write killed midway leaves only its temporary folder: the next run writes the chunks."""
    dm = ClassificationDataModule("digits", DIGITS, data_dir=str(tmp_path), loader="stream")
    where = dm._stream_dir()
    (where.with_name(f"{where.name}.tmp-1") / "train").mkdir(parents=True)  # the killed process's
    dm.prepare_data()
    assert (where / "test" / "index.json").is_file()


@pytest.mark.parametrize("kwargs", [{}, {"label_fraction": 0.3, "augment": "crop"}, {"num_folds": 3, "fold": 2}],
                         ids=["default", "few labels, augmented", "a fold"])
def test_stream_serves_the_in_memory_loaders_batches(tmp_path: Path, kwargs: dict) -> None:
    """Validation and test batches equal the in-memory loaders' (images, labels, normalisation);
    the training split holds the same examples, and one process's epoch streams each once."""
    stream, memory = digits(tmp_path, loader="stream", **kwargs), digits(tmp_path, **kwargs)
    for a, b in ((stream.val_dataloader(), memory.val_dataloader()), (stream.test_dataloader(), memory.test_dataloader())):
        pairs = list(zip(a, b, strict=True))
        assert all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in pairs)
    (streamed, streamed_idx), (held, held_idx) = stream.train_view, memory.train_view
    assert len(streamed_idx) == len(held_idx) == len(memory.data_train)
    assert all(torch.equal(streamed[i][0], held[j][0]) for i, j in zip(streamed_idx, held_idx))
    loader = stream.train_dataloader()
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == len(memory.train_dataloader()) and sorted(labels.tolist()) == sorted(
        held.targets[list(held_idx)].tolist())


def test_a_stream_loader_resumed_mid_epoch_serves_the_rest_of_that_epoch(tmp_path: Path) -> None:
    """The StreamingDataLoader's state after some batches, loaded into a fresh loader (as Lightning
    does from last.ckpt), gives the rest of the epoch's batches, augmentation included (the global
    RNG restored as RNGState does); the state loads with ``weights_only=True``."""
    dm = digits(tmp_path, loader="stream", augment="crop")
    torch.manual_seed(0)
    reference = dm.train_dataloader()
    list(reference)
    before = torch.get_rng_state()
    uninterrupted = list(reference)  # epoch 2

    stopped = dm.train_dataloader()
    list(stopped)
    torch.set_rng_state(before)
    batches = iter(stopped)
    served = [next(batches) for _ in range(5)]
    torch.save({"loader": stopped.state_dict()}, tmp_path / "state.pt")
    state, rng = torch.load(tmp_path / "state.pt", weights_only=True)["loader"], torch.get_rng_state()

    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    rest = list(resumed)
    assert len(served) + len(rest) == len(uninterrupted)
    assert all(torch.equal(x, x_ref) and torch.equal(y, y_ref) for (x, y), (x_ref, y_ref) in zip(served + rest, uninterrupted))


def test_train_py_trains_on_a_stream(tmp_path: Path) -> None:
    cfg = compose("train", [*FAST, "data.loader=stream", f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "run")
    metrics, _ = train(cfg)
    assert float(metrics["test/acc"]) > 0.5, metrics
    (written,) = (tmp_path / "data" / "streams").iterdir()
    assert written.name.startswith("digits-")


def write_jpegs(root: Path, per_class: int = 12, classes: int = 3) -> Path:
    """``root/<class>/<i>.jpg``: mixed sizes and modes, each class its own brightness."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(10, 40, 2))
            array = (rng.random((h, w, 3)) * 60 + label * 80).astype(np.uint8)
            path = root / f"class_{label}" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).convert("L" if i % 3 == 0 else "RGB").save(path)
    return root


def test_a_folder_is_written_one_file_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With data.loader=stream neither the config (statistics) nor the write decodes the whole
    folder into memory; the chunks hold what the in-memory loaders hold, split alike."""
    root = write_jpegs(tmp_path / "images")
    image_folder.folder_splits.cache_clear()
    image_folder.load_folder.cache_clear()
    overrides = [*FAST, "data=image_folder", f"data.root={root}", "data.image_size=16", "data.batch_size=8",
                 f"paths.data_dir={tmp_path / 'data'}"]
    with monkeypatch.context() as m:
        m.setattr(image_folder, "load_folder", lambda *a: pytest.fail("the whole folder was decoded"))
        cfg = compose("train", [*overrides, "data.loader=stream"], tmp_path / "run")
        assert cfg.data.provides.image_shape == [3, 16, 16] and cfg.data.provides.num_classes == 3
        stream = instantiate_component(cfg.data)
        stream.prepare_data()
        stream.setup()
    memory_cfg = compose("train", overrides, tmp_path / "run")
    assert memory_cfg.data.mean == pytest.approx(list(cfg.data.mean), abs=2e-4)
    memory = instantiate_component(memory_cfg.data)
    memory.setup()
    for a, b in ((stream.data_val, memory.data_val), (stream.data_test, memory.data_test)):
        assert len(a) == len(b) and all(torch.equal(a[i][0], b[i][0]) and int(a[i][1]) == int(b[i][1]) for i in range(len(a)))
    assert len(stream.data_train) == len(memory.data_train)


class RecordTrainingBatches(Callback):
    """Writes ``<path>/rank<r>.json``: the bytes of every training image this process was served."""

    def __init__(self, path: str) -> None:
        self.path, self.seen = Path(path), []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.seen += [image.numpy().tobytes().hex() for image in batch[0]]

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        (self.path / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


@pytest.mark.slow  # a DDP run of 2 processes
def test_ddp_processes_stream_disjoint_shards_that_cover_the_data(tmp_path: Path) -> None:
    """Under trainer=ddp_cpu (use_distributed_sampler=false) litdata finds each process's rank:
    the two processes' training images are disjoint and cover the training split, but for the
    remainder that equal full batches leave out (fewer than a global batch)."""
    data = tmp_path / "data"
    record = f"+callbacks.record={{_target_: tests.test_stream.RecordTrainingBatches, path: {tmp_path}}}"
    run_ok("train.py", ["trainer=ddp_cpu", "data.loader=stream", "trainer.max_epochs=1", "data.batch_size=64",
                        "trainer.limit_val_batches=2", f"paths.data_dir={data}", record], tmp_path / "logs")
    ranks = [Counter(json.loads((tmp_path / f"rank{r}.json").read_text())) for r in (0, 1)]
    dm = digits(data, loader="stream")
    normalize = dm._collate()
    train = dm.train_view[0]
    everything = Counter(normalize([train[i]])[0][0].numpy().tobytes().hex() for i in range(len(train)))
    shares = [sum(r.values()) for r in ranks]
    assert shares[0] == shares[1] and shares[0] % 32 == 0
    assert not (ranks[0] + ranks[1]) - everything  # nothing twice, nothing else
    assert 0 <= len(dm.data_train) - 2 * shares[0] < 64


@pytest.mark.slow  # a training run, then an evaluation by one process and by two
def test_ddp_evaluates_a_stream_exactly_as_one_process(tmp_path: Path) -> None:
    """Evaluation reads the chunks through the in-memory loaders' sharding, not litdata's equal
    shares: two processes score every test image once, as one process scores them."""
    data = f"paths.data_dir={tmp_path / 'data'}"
    run = run_ok("train.py", ["data.loader=stream", "trainer.max_epochs=1", "trainer.limit_val_batches=2", data],
                 tmp_path / "train")
    best = next((run / "checkpoints").glob("epoch_*.ckpt"))
    one, two = (run_ok("eval.py", [f"ckpt_path={best}", data, *extra], tmp_path / name)
                for name, extra in (("one", []), ("two", ["trainer=ddp_cpu"])))
    assert float(metrics_csv(two)["test/acc"]) == pytest.approx(float(metrics_csv(one)["test/acc"]), abs=1e-6)
    rows = [(d / "predictions.jsonl").read_text().splitlines() for d in (one, two)]
    assert rows[0] == rows[1] and len(rows[0]) == 360  # digits' test split, each image once


@pytest.mark.parametrize("step", [7, pytest.param(5, marks=pytest.mark.slow)], ids=["mid epoch", "an epoch's last step"])
def test_a_stream_run_stopped_by_sigterm_resumes_as_if_never_stopped(step: int, tmp_path: Path) -> None:
    """As test_sweep_resume's test for the in-memory loaders: SIGTERM after ``step`` (5 steps an
    epoch), last.ckpt holds the StreamingDataLoader's state, and the resumed run ends with the
    weights and test metrics of an uninterrupted one (the first run writes the chunks, the others
    reuse them: writing draws nothing from the run's RNGs)."""
    assert_sigterm_resume_is_exact([*FAST, *TINY, "data.augment=crop", "data.loader=stream",
                                    f"paths.data_dir={tmp_path / 'data'}"], step, tmp_path)


def test_a_bad_loader_is_one_line(tmp_path: Path) -> None:
    from src.core.errors import ConfigError

    with pytest.raises(ConfigError, match="data.loader='disk' is not one of batches, items, stream$"):
        ClassificationDataModule("digits", DIGITS, data_dir=str(tmp_path), loader="disk")


def test_a_folder_streamed_without_its_statistics_is_one_line(tmp_path: Path) -> None:
    """A folder's mean and std come from its config (the resolver measures them); set to null,
    stream cannot measure them without reading the whole folder: one line naming the fix."""
    from src.core.errors import ConfigError

    root = write_jpegs(tmp_path / "images")
    provides = {"tasks": ["classification"], "image_shape": [3, 16, 16], "num_classes": 3}
    dm = ClassificationDataModule("image_folder", provides, data_dir=str(tmp_path), loader="stream", root=str(root),
                                  image_size=16)
    dm.prepare_data()
    with pytest.raises(ConfigError, match="data.loader=stream needs the statistics of data=image_folder in its config"):
        dm.setup()

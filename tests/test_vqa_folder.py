"""data=vqa_folder: a user's images with JSON Lines questions, one command from files to a trained,
evaluated and answering VQA model; what the config resolves from the files; its one-line errors.
Every VQA model on a folder: test_pairs.py (``-k vqa_folder``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from src.core.errors import ConfigError, DataError
from src.data.sources import vqa_folder
from src.data.vqa import VQADataModule
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import (
    FAST,
    QUIET,
    assert_eval_reproduces,
    run_cli,
    write_jsonl,
    write_vqa_folder,
)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test writes its own folders, maybe at a path an earlier test used."""
    vqa_folder._read_folder.cache_clear()
    vqa_folder.vqa_folder.cache_clear()
    yield


def folder_cfg(tmp_path: Path, root: Path, *overrides: str):
    (tmp_path / "run").mkdir(exist_ok=True)
    return compose("train", [*FAST, "model=fusion", "data=vqa_folder", f"data.root={root}", "data.image_size=24",
                             "data.batch_size=8", *overrides], tmp_path / "run")


def datamodule(cfg) -> VQADataModule:
    dm = instantiate_component(cfg.data)
    dm.setup()
    return dm


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_provides_come_from_the_files(tmp_path: Path) -> None:
    """Sorted answers, their count, the word-level vocabulary of the training questions, the
    question types the answers have, 3 channels (mixed RGB, RGBA, palette images of mixed
    sizes); the seeded test and validation splits keep each image's questions on one side."""
    cfg = folder_cfg(tmp_path, write_vqa_folder(tmp_path / "vqa"))
    provides = cfg.data.provides
    assert list(provides.answers) == ["blue", "circle", "green", "no", "red", "square", "triangle", "yes"]
    assert provides.num_answers == 8 and list(provides.question_types) == ["yes_no", "other"]
    assert list(provides.image_shape) == [3, 24, 24] and len(cfg.data.mean) == 3
    dm = datamodule(cfg)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (29, 3, 8)
    assert dm.data_train.num_questions + dm.data_val.num_questions + dm.data_test.num_questions == 120
    assert not set(dm.data_train.image_rows.tolist()) & set(dm.data_val.image_rows.tolist())
    # what the word-level tokenizer of the training questions gives ([PAD], [UNK] and 13 words)
    assert provides.vocab_size == 15
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 24, 24) and abs(float(batch["image"].mean())) < 0.5  # the folder's statistics
    assert set(batch["type"].tolist()) == {0, 1}  # yes_no and other


def test_pixels_are_what_predict_reads_and_gray_stays_one_channel(tmp_path: Path) -> None:
    from src.data.inputs import read_image

    root = write_vqa_folder(tmp_path / "vqa", n=6)
    decoded = vqa_folder._read_folder(str(root), 24)
    file = root / "images" / "3.png"
    assert torch.equal(decoded.images[decoded.index[file]], read_image(file, (3, 24, 24)))

    gray = write_vqa_folder(tmp_path / "gray", n=10, modes=("L",))
    assert list(folder_cfg(tmp_path, gray).data.provides.image_shape) == [1, 24, 24]


def test_val_and_test_files_are_kept_and_unknown_answers_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """val.jsonl and test.jsonl are the splits; their questions with an answer train.jsonl never
    gives are skipped, counted in one warning; the answers stay train.jsonl's."""
    root = write_vqa_folder(tmp_path / "vqa", n=30)
    rows = rows_of(root / "train.jsonl")
    write_jsonl(root / "train.jsonl", rows[:60])
    write_jsonl(root / "val.jsonl", rows[60:75])
    write_jsonl(root / "test.jsonl", [*rows[75:], {"image": "images/0.png", "question": "What is it?", "answer": "purple"}])
    with caplog.at_level(logging.WARNING):
        cfg = folder_cfg(tmp_path, root)
        dm = datamodule(cfg)
    warnings = [r.getMessage() for r in caplog.records if "never occurs in train.jsonl" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 1 questions" in warnings[0] and "'purple' in test.jsonl" in warnings[0]
    assert "purple" not in cfg.data.provides.answers
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (20, 5, 5)
    assert (dm.data_val.num_questions, dm.data_test.num_questions) == (15, 15)


def test_missing_and_unreadable_images_are_skipped_with_their_questions(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    root = write_vqa_folder(tmp_path / "vqa")
    (root / "images" / "0.png").unlink()
    (root / "images" / "1.png").write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING):
        dm = datamodule(folder_cfg(tmp_path, root))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("1 of the 40 images the question files name do not exist" in m for m in messages) == 1, messages
    assert sum("skipped 1 unreadable or truncated images of 39" in m for m in messages) == 1, messages
    assert dm.data_train.num_questions + dm.data_val.num_questions + dm.data_test.num_questions == 114


def error(root: Path | None, image_size: int = 24) -> str:
    """The one line the source raises for a bad folder."""
    vqa_folder._read_folder.cache_clear()
    vqa_folder.vqa_folder.cache_clear()
    with pytest.raises((DataError, ConfigError)) as e:
        vqa_folder.vqa_folder(str(root) if root else None, image_size, 0.2, 0.1, 0)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_folders_are_one_line(tmp_path: Path) -> None:
    assert "data.root=" in error(tmp_path / "missing") and "does not exist" in error(tmp_path / "missing")
    assert "needs data.root=DIR" in error(None)
    assert "data.image_size=0 must be a positive whole number" in error(tmp_path, image_size=0)
    (tmp_path / "empty").mkdir()
    assert "has no train.jsonl" in error(tmp_path / "empty")
    root = write_vqa_folder(tmp_path / "vqa", n=6)
    (root / "val.jsonl").write_text('{"image": "images/0.png", "question": "What?", "answer": "red"}\n'
                                    '{"image": "images/1.png", "answer": "red"}\n')
    assert error(root).startswith(f"{root / 'val.jsonl'}:2 lacks question")
    (root / "val.jsonl").write_text('{"image": "images/0.png", "question": "What?", "answer": "red"\n')
    assert f"{root / 'val.jsonl'}:1 is not JSON" in error(root)
    (root / "val.jsonl").write_text('{"image": "images/0.png", "question": "What?", "answer": "purple"}\n')
    assert "no question of val.jsonl is left" in error(root)
    (root / "val.jsonl").unlink()
    (root / "test.jsonl").write_text("\n")
    assert "test.jsonl holds no rows" in error(root)
    (root / "test.jsonl").unlink()
    write_jsonl(root / "train.jsonl", [{"image": "nowhere.png", "question": "What?", "answer": "red"}])
    assert "none of the 1 images its question files name exist" in error(root)


@pytest.mark.slow  # train.py in a subprocess; the same lines are checked in-process above
def test_a_bad_folder_stops_train_py_in_one_line(tmp_path: Path) -> None:
    """Through train.py as a user runs it (the config tree printed: the resolver runs early)."""
    root = write_vqa_folder(tmp_path / "vqa", n=3)
    (root / "train.jsonl").write_text('{"image": "images/0.png", "question": "What?"}\n')
    proc = run_cli(["train.py", "model=fusion", "data=vqa_folder", f"data.root={root}", f"paths.log_dir={tmp_path / 'logs'}",
                    "trainer.enable_progress_bar=false"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if "Error:" in line]
    assert len(errors) == 1 and f"DataError: {root / 'train.jsonl'}:1 lacks answer" in errors[0], out[-3000:]


def test_folder_trains_then_eval_and_predict_from_the_checkpoint(tmp_path: Path) -> None:
    """A folder -> train.py (2 epochs) -> eval.py and predict.py from the checkpoint alone (their
    configs resolve nothing from the files): the same test metrics, and the answers of the
    model for the folder's own questions."""
    from predict import predict
    from src.data.inputs import read_image
    from train import train

    root = write_vqa_folder(tmp_path / "vqa")
    metrics, objects = train(folder_cfg(tmp_path, root, "trainer.max_epochs=2"))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    vqa_folder._read_folder.cache_clear()  # eval reads the files again, as a new process would
    vqa_folder.vqa_folder.cache_clear()
    assert_eval_reproduces(metrics, ckpt, tmp_path / "eval")

    module, dm = objects["model"].eval(), objects["datamodule"]
    item = dm.data_test[0]
    with torch.no_grad():
        expected = module(dm.input_collate()([item])).argmax(1).tolist()
    questions = [dm.test_questions[q] for q in item["question_index"].tolist()]
    # the first test image's file, found by its pixels (predict.py reads a file as the folder's images are read)
    file = next(f for f in sorted((root / "images").glob("*.png")) if torch.equal(read_image(f, (3, 24, 24)), item["image"]))
    write_jsonl(tmp_path / "questions.jsonl", [{"image": str(file), "question": q} for q in questions])
    out = tmp_path / "predict"
    rows, _ = predict(compose("predict", [*QUIET[:2], f"ckpt_path={ckpt}", f"inputs={tmp_path / 'questions.jsonl'}"], out))
    assert [r["answer"] for r in rows] == [module.hparams.answer_names[i] for i in expected]

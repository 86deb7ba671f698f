"""predict.py answers new inputs with a trained model, for every task: the same answers as the
test loop on the same examples, a bad input reported in its own row, a bad command in one line."""

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from predict import predict
from src.data.inputs import read_inputs
from src.data.vqa import VQACollate
from src.utils.config import compose
from tests.conftest import QUIET, run_cli


def run_predict(tmp_path: Path, ckpt: Path, *overrides: str) -> list[dict[str, Any]]:
    """predict.py in-process; the rows of its predictions.jsonl."""
    out = tmp_path / "predict"
    predict(compose("predict", [*QUIET[:2], f"ckpt_path={ckpt}", *overrides], out))
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def save_png(image: torch.Tensor, path: Path) -> Path:
    """A uint8 ``(C, H, W)`` image as a lossless PNG."""
    array = image.permute(1, 2, 0).squeeze(-1).numpy()
    Image.fromarray(array).save(path)
    return path


def test_classifier_answers_as_the_test_loop(trained, tmp_path: Path) -> None:
    """The dataset's own test images, as PNG files in a folder: the labels the test loop's logits
    give; an unreadable file and a missing one are errors in their rows, the others answered."""
    ckpt, objects = trained("classification")
    module, dm = objects["model"].eval(), objects["datamodule"]
    images, _ = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        expected = module(images[:6]).softmax(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        save_png(dm.data_test.images[i], folder / f"{i}.png")
    (folder / "6_broken.png").write_bytes(b"\x89PNG not really")

    rows = run_predict(tmp_path, ckpt, f"inputs={folder}", "top_k=3")
    assert [Path(r["input"]["image"]).name for r in rows] == [f"{i}.png" for i in range(6)] + ["6_broken.png"]
    assert [r["label"] for r in rows[:6]] == expected.argmax(1).tolist()
    assert [r["confidence"] for r in rows[:6]] == pytest.approx(expected.max(1).values.tolist(), abs=1e-5)
    assert all(len(r["top_k"]) == 3 and r["name"] == str(r["label"]) for r in rows[:6])
    assert "not a readable image" in rows[6]["error"] and "label" not in rows[6]

    # a JSONL of paths relative to it, one of them missing; an RGBA image of another size is converted
    save_png(torch.randint(0, 256, (4, 20, 30), dtype=torch.uint8), folder / "rgba.png")
    (tmp_path / "index.jsonl").write_text("".join(json.dumps({"image": f"photos/{n}"}) + "\n"
                                                  for n in ("0.png", "missing.png", "rgba.png")))
    rows = run_predict(tmp_path, ckpt, f"inputs={tmp_path / 'index.jsonl'}")
    assert rows[0]["label"] == expected[0].argmax().item() and "does not exist" in rows[1]["error"]
    assert 0 <= rows[2]["label"] < 10


@pytest.mark.parametrize(("inputs", "message"), [
    ("missing", "DataError: inputs={p}/missing does not exist"),
    ("article.txt", "DataError: inputs={p}/article.txt is text, but this model takes an image file"),
    ("rows.jsonl", "DataError: inputs={p}/rows.jsonl: no row has the field(s) image"),
    ("no_ckpt", "CheckpointError: predict.py needs ckpt_path="),
    ("decoding", "ConfigError: decoding.* applies to summarization checkpoints"),
    ("backend", "ConfigError: backend=onnx needs artifact=<compress run>/net.onnx"),
])
def test_bad_command_is_one_line(inputs: str, message: str, trained, tmp_path: Path,
                                 caplog: pytest.LogCaptureFixture) -> None:
    ckpt, _ = trained("classification")
    (tmp_path / "article.txt").write_text("An article, not an image.\n")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"article": "text"}) + "\n")
    overrides = {"no_ckpt": ["inputs=x.png"], "decoding": [f"ckpt_path={ckpt}", "inputs=x.png", "decoding.beam_size=2"],
                 "backend": [f"ckpt_path={ckpt}", "inputs=x.png", "backend=onnx"]}
    args = overrides.get(inputs, [f"ckpt_path={ckpt}", f"inputs={tmp_path / inputs}"])
    with pytest.raises(SystemExit) as e:
        predict(compose("predict", [*QUIET[:2], *args], tmp_path / "run"))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert e.value.code == 1 and len(errors) == 1 and message.format(p=tmp_path) in errors[0], caplog.text


@pytest.mark.slow  # predict.py in a subprocess; the in-process errors are checked above
def test_command_line_error_has_no_traceback(tmp_path: Path) -> None:
    proc = run_cli(["predict.py", f"ckpt_path={tmp_path / 'none.ckpt'}", "inputs=x.png", f"paths.log_dir={tmp_path}"])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out and "none.ckpt does not exist" in out, out[-2000:]


def test_summarizer_answers_as_the_test_loop(trained, tmp_path: Path) -> None:
    """The test split's articles, one per line of a text file (an empty line among them): the
    summaries eval.py decodes for them; ``decoding.*`` changes the search."""
    ckpt, objects = trained("summarization")
    from eval import evaluate

    evaluate(compose("eval", [*QUIET[:2], f"ckpt_path={ckpt}"], tmp_path / "eval"))
    evaluated = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    articles = objects["datamodule"].data["test"].articles
    (tmp_path / "articles.txt").write_text("\n".join([*articles[:4], "", *articles[4:]]) + "\n")
    rows = run_predict(tmp_path, ckpt, f"inputs={tmp_path / 'articles.txt'}", "batch_size=4")
    assert rows[4] == {"input": {"article": ""}, "error": "'article' is empty"}
    answered = rows[:4] + rows[5:]
    assert [r["summary"] for r in answered] == [r["prediction"] for r in evaluated]
    greedy = run_predict(tmp_path, ckpt, f"inputs={tmp_path / 'articles.txt'}", "decoding.beam_size=1",
                         "decoding.max_len=3")
    assert all(len(r["summary"].split()) <= 3 for r in greedy if "summary" in r)


def test_unknown_decoding_setting_is_one_line(trained, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt, _ = trained("summarization")
    (tmp_path / "a.txt").write_text("One article.\n")
    with pytest.raises(SystemExit):
        predict(compose("predict", [*QUIET[:2], f"ckpt_path={ckpt}", f"inputs={tmp_path / 'a.txt'}",
                                    "+decoding.beams=2"], tmp_path / "run"))
    assert "ConfigError: decoding.beams is not a decoding setting; use beam_size, max_len" in caplog.text


def test_articles_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("First article.\nSecond one.\n"))
    assert read_inputs("-", "text") == [{"article": "First article."}, {"article": "Second one."}]


def test_vqa_answers_as_the_test_loop(trained, tmp_path: Path) -> None:
    """A test image saved as PNG with its own questions: the test loop's answers; a row without a
    question is an error in its row."""
    ckpt, objects = trained("vqa")
    module, dm = objects["model"].eval(), objects["datamodule"]
    item = dm.data_test[0]
    with torch.no_grad():
        expected = module(VQACollate(None)([item])).argmax(1).tolist()
    image = save_png(item["image"], tmp_path / "scene.png")
    questions = [dm.test_questions[q] for q in item["question_index"].tolist()]
    rows = [{"image": image.name, "question": q} for q in questions] + [{"image": image.name}]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers = run_predict(tmp_path, ckpt, f"inputs={tmp_path / 'questions.jsonl'}")
    assert [a["answer"] for a in answers[:-1]] == [module.hparams.answer_names[i] for i in expected]
    assert answers[-1]["error"] == "the row has no 'question'"


def test_generator_draws_samples_and_a_grid(trained, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt, _ = trained("generation")
    rows = run_predict(tmp_path, ckpt, "num_samples=5", "label=3")
    out = tmp_path / "predict"
    assert [r["input"] for r in rows] == [{"label": 3}] * 5 and all(r["label"] == 3 for r in rows)
    assert all((out / r["file"]).is_file() for r in rows) and len({r["file"] for r in rows}) == 5
    assert Image.open(out / "grid.png").size[0] > Image.open(out / rows[0]["file"]).size[0]
    with pytest.raises(SystemExit):
        predict(compose("predict", [*QUIET[:2], f"ckpt_path={ckpt}", "label=12"], tmp_path / "bad"))
    assert "ConfigError: label=12 is not a class of this generator (0..9)" in caplog.text


@pytest.mark.slow  # compress.py's ONNX export, then predict.py on it
def test_onnx_artifact_answers_as_the_net(trained, tmp_path: Path) -> None:
    """``backend=onnx artifact=<compress.py run>/net.onnx``: the exported net gives the answers
    the checkpoint's own net gives."""
    from compress import compress

    ckpt, objects = trained("classification")
    (tmp_path / "onnx").mkdir()
    compress(compose("compress", [*QUIET[:2], f"ckpt_path={ckpt}", "compression=onnx", "latency.repeats=1",
                                  "latency.batch_sizes=[1]", "latency.threads=[1]"], tmp_path / "onnx"))
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        save_png(objects["datamodule"].data_test.images[i], folder / f"{i}.png")
    eager = run_predict(tmp_path, ckpt, f"inputs={folder}")
    exported = run_predict(tmp_path, ckpt, f"inputs={folder}", "backend=onnx", f"artifact={tmp_path / 'onnx' / 'net.onnx'}")
    assert [r["label"] for r in exported] == [r["label"] for r in eager]
    assert [r["confidence"] for r in exported] == pytest.approx([r["confidence"] for r in eager], abs=1e-4)

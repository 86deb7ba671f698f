"""benchmarks/gpu_suite.py --smoke: every section of the GPU suite on CPU, on the real data (DATA_DIR
or ../shared/data), a few steps each; its closing JSON line has a number for every section."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA, run_cli

NEEDED = ("MNIST/raw/train-images-idx3-ubyte.gz", "easy-VQA/train/questions.json", "cnn_dailymail/pg_tokenized/train.jsonl.gz",
          "cnn_dailymail/pg_tokenized/validation.jsonl.gz", "cnn_dailymail/pg_tokenized/test.jsonl.gz")


def suite_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA_DIR, or ../shared/data; copied when not writable (torchvision extracts MNIST in place)."""
    source = Path(os.environ["DATA_DIR"]) if os.environ.get("DATA_DIR") else SHARED_DATA
    missing = [f for f in NEEDED if not (source / f).exists()]
    if missing:
        pytest.skip(f"the GPU suite's data is not in {source}: {', '.join(missing)} (set DATA_DIR to a copy of ../shared/data)")
    if os.access(source / "MNIST" / "raw", os.W_OK):
        return source
    copy = tmp_path_factory.mktemp("data")
    for name in ("MNIST", "easy-VQA", "cnn_dailymail"):
        shutil.copytree(source / name, copy / name)
    return copy


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = run_cli([str(ROOT / "benchmarks" / "gpu_suite.py"), "--smoke"], env={"DATA_DIR": str(tmp_path / "nothing")})
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "lacks" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_smoke_suite(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = suite_data(tmp_path_factory)
    proc = run_cli([str(ROOT / "benchmarks" / "gpu_suite.py"), "--smoke"], env={"DATA_DIR": str(data)}, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("mnist_tta", "vqa_tta", "gan", "summarization", "step_time_ratio", "step_time", "sections_wall_s",
                "budget_s", "total_wall_s", "table", "git_sha", "versions"):
        assert key in figures, key
    assert figures["smoke"] is True and not figures["errors"]
    for name in ("mnist_tta", "vqa_tta"):
        assert isinstance(figures[name]["test_acc"], float) and figures[name]["wall_s"] > 0
    assert figures["gan"]["fid_ratio"] > 0
    for model in ("lead3", "lstm", "transformer"):
        assert all(isinstance(figures["summarization"][model][k], float) for k in ("rouge1", "rouge2", "rougeL"))
    ratios = figures["step_time_ratio"]
    assert set(ratios) == {"classification", "vqa", "generation", "summarization_transformer", "summarization_lstm"}
    for task, variants in ratios.items():
        expected = {"eager"} if task in ("generation", "summarization_lstm") else {"eager", "compiled"}
        assert all(variants[v] > 0 for v in expected), (task, variants)
    assert set(figures["sections_wall_s"]) == set(figures["budget_s"])
    assert "section" in proc.stdout and "budget" in proc.stdout  # the table

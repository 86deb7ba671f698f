"""eval.py rebuilds what a checkpoint was trained with: `eval.py ckpt_path=X` alone, for every task."""

import json
from pathlib import Path

import pytest
import torch

from eval import evaluate
from src.utils.config import compose
from tests.conftest import FAST, LIMITS, QUIET, task_runs
from train import train


@pytest.mark.parametrize("task", ["classification", "vqa", "generation", "summarization"])
def test_eval_with_only_the_checkpoint_reproduces_the_test_metric(task: str, tmp_path: Path) -> None:
    overrides, metric = task_runs(tmp_path)[task]
    trained, objects = train(compose("train", [*FAST, *LIMITS, *overrides], tmp_path / "train"))
    best = objects["trainer"].checkpoint_callback.best_model_path
    evaluated, _ = evaluate(compose("eval", [*QUIET[:2], f"ckpt_path={best}", "trainer.limit_test_batches=2"],
                                    tmp_path / "eval"))
    assert float(evaluated[metric]) == pytest.approx(float(trained[metric]), rel=1e-5)
    rows = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert rows


def test_summaries_are_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval.py writes the summaries the test loop decoded: no predict loop decodes them again."""
    from src.models.summarization import SummarizationModule

    overrides, _ = task_runs(tmp_path)["summarization"]
    _, objects = train(compose("train", [*FAST, *LIMITS, *overrides], tmp_path / "train"))
    monkeypatch.setattr(SummarizationModule, "predict_step", lambda *args: pytest.fail("decoded twice"))
    evaluate(compose("eval", [*QUIET[:2], f"ckpt_path={objects['trainer'].checkpoint_callback.best_model_path}"],
                     tmp_path / "eval"))
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]) == {"id", "reference", "prediction"}  # the 8 synthetic test pairs


def test_eval_overrides_apply_on_top_of_the_checkpoint(tmp_path: Path) -> None:
    train(compose("train", [*FAST, *LIMITS, "model.net.hidden=32"], tmp_path / "train"))
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    _, objects = evaluate(compose("eval", [*QUIET[:2], f"ckpt_path={ckpt}", "data.batch_size=7", "~model.net.dropout"],
                                  tmp_path / "eval"))
    assert objects["cfg"].model.net.hidden == 32 and objects["datamodule"].hparams.batch_size == 7
    assert "dropout" not in objects["cfg"].model.net  # deleted, as Hydra does: the constructor's default applies
    assert torch.equal(objects["model"].net.classifier[1].weight,
                       torch.load(ckpt, weights_only=True)["state_dict"]["net.classifier.1.weight"])

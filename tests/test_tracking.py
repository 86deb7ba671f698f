"""Comparing runs: names and groups from what varies, one W&B run per resumed run, summary.json,
compare.py's table and curves, W&B checkpoint artifacts, and the progress bar."""

import csv
import json
from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from src.utils.results import read_run
from src.utils.tracking import is_bookkeeping, run_names
from tests.conftest import QUIET, compose, offline_runs, run_cli, run_dirs, wandb_env
from train import train


def test_names_come_from_choices_and_overrides(tmp_path: Path) -> None:
    compose("train", ["model=dense", "model.optimizer.lr=0.1", "trainer.max_epochs=2", "seed=7", "logger=many",
                      f"paths.log_dir={tmp_path}", "extras.print_config=false", "+callbacks.x=null"], tmp_path)
    names = run_names({"seed": 7})
    assert names.name == "dense-digits-lr=0.1-max_epochs=2-s7"
    assert names.variant == names.group == "dense-digits-lr=0.1-max_epochs=2"
    compose("train", ["experiment=mnist_cnn", "model=dense", "seed=1"], tmp_path)
    assert run_names({"seed": 1}).name == "mnist_cnn-model=dense-s1"
    assert all(map(is_bookkeeping, ["paths.log_dir", "logger", "+callbacks.x", "ckpt_path", "hydra.run.dir"]))
    assert not any(map(is_bookkeeping, ["trainer.max_epochs", "model.net.dropout", "debug"]))


def test_sweep_is_named_grouped_and_compared(tmp_path: Path) -> None:
    """The issue's 2 x 2 sweep on the default data, with every logger (W&B offline, without an API
    key) and checkpoints as W&B artifacts: four W&B runs named from what varies, in one group, with
    their media, summaries and artifacts; compare.py gives mean ± std per model and a curves plot."""
    env = wandb_env(tmp_path)
    proc = run_cli(["train.py", "-m", "model=cnn,dense", "seed=1,2", "logger=many", "trainer.max_epochs=2",
                    "callbacks=[default,wandb_checkpoints]", f"paths.log_dir={tmp_path}", *QUIET], env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = run_dirs(tmp_path)
    sweep = jobs[0].parent
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["run/name"] for s in summaries] == ["cnn-digits-s1", "cnn-digits-s2", "dense-digits-s1", "dense-digits-s2"]
    assert {s["run/group"] for s in summaries} == {f"sweep-{sweep.name}"}
    for job, summary in zip(jobs, summaries):
        ((run_id, records),) = offline_runs(job)  # what `wandb sync` uploads
        assert f'"name":"{summary["run/name"]}"'.encode() in records and f"sweep-{sweep.name}".encode() in records
        assert summary["best/epoch"] in (0, 1) and 0 < summary["best/val/acc"] <= 1 and 0 < summary["test/acc"] <= 1
        assert summary["model/params/total"] > 0 and summary["time/train_s"] > 0 and len(summary["git/sha"]) == 40
        assert b"best/val/acc" in records and b"git/sha" in records  # the same fields in the W&B summary
        # best and last checkpoints: two versions of one model artifact
        assert records.count(f"model-{run_id}".encode()) >= 2 and b"best" in records and b"latest" in records
        # the config is logged once as nested JSON ("model" -> {"net": {...}}), not as flattened keys
        assert b'"net":{"_target_":"src.models.nets.' in records and b"model/net/_target_" not in records
        assert list(job.glob("wandb/offline-run-*/files/media/images/test/confusion_matrix_*.png"))
        assert list((job / "tensorboard").rglob("events.out.tfevents.*")) and list((job / "csv").rglob("metrics.csv"))

    proc = run_cli(["compare.py", str(sweep)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep / "comparison_over_seeds.csv") as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"cnn", "dense"} and all(row["n"] == "2" for row in rows.values())
    for model, row in rows.items():
        accs = [s["test/acc"] for s in summaries if s["run/name"].startswith(model)]
        mean, std = row["test/acc"].split(" ± ")
        assert float(mean) == pytest.approx(sum(accs) / 2, abs=1e-3) and float(std) >= 0
    assert "Mean ± std over seeds" in (sweep / "comparison.md").read_text()
    assert (sweep / "curves.png").stat().st_size > 10_000

    # eval.py names its W&B run after the checkpoint's choices, not its own defaults
    ckpt = next((jobs[2] / "checkpoints").glob("epoch_*.ckpt"))
    proc = run_cli(["eval.py", f"ckpt_path={ckpt}", "logger=wandb", f"paths.log_dir={tmp_path / 'eval'}",
                    "extras.print_config=false"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((_, records),) = offline_runs(run_dirs(tmp_path / "eval")[0])
    assert b"dense-digits-s12345" in records and b"cnn-digits" not in records


def test_killed_and_resumed_run_is_one_run(tmp_path: Path) -> None:
    """A run stopped after epoch 1 and resumed from its last.ckpt continues in its own folder:
    the same W&B run id, one TensorBoard version, and CSV parts that compare.py joins into one
    curve; the summary's training time includes the first part."""
    env = wandb_env(tmp_path)
    common = ["logger=many", "trainer.max_epochs=3", f"paths.log_dir={tmp_path}", *QUIET]
    stop = "+callbacks.stop={_target_: tests.conftest.StopAfterEpochs, epochs: 1}"
    assert run_cli(["train.py", *common, stop], env=env).returncode == 0
    (run,) = run_dirs(tmp_path)
    first = json.loads((run / "summary.json").read_text())
    proc = run_cli(["train.py", *common, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert run_dirs(tmp_path) == [run]
    ids = [run_id for run_id, _ in offline_runs(run)]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [p.name for p in (run / "tensorboard").iterdir()] == ["version_0"]
    assert sorted(p.name for p in (run / "csv").iterdir()) == ["version_0", "version_1"]
    curves = read_run(run).curves.dropna(subset=["val/acc"])
    assert list(curves["epoch"]) == [0, 1, 2]
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["run/name"] == first["run/name"] and resumed["time/train_s"] > first["time/train_s"]


class RecordProgressBar(Callback):
    """Keeps what the progress bar shows after the last batch of each epoch."""

    def __init__(self) -> None:
        self.shown: dict[int, dict] = {}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self.shown[trainer.current_epoch] = trainer.progress_bar_callback.get_metrics(trainer, pl_module)


def test_progress_bar_shows_loss_watched_metric_and_best(cfg_train) -> None:
    """The loss (the classifier logs it per epoch), the watched metric and its best once
    validated, and nothing else."""
    cfg = cfg_train("trainer.max_epochs=3")
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = True
        cfg.callbacks.rich_progress_bar = {"_target_": "src.callbacks.progress.WatchedProgressBar", "metric": "val/acc"}
        cfg.callbacks.record = {"_target_": "tests.test_tracking.RecordProgressBar"}
    _, objects = train(cfg)
    (record,) = [c for c in objects["trainer"].callbacks if isinstance(c, RecordProgressBar)]
    assert [list(record.shown[epoch]) for epoch in range(3)] == [[], *[["loss", "val/acc", "best"]] * 2]
    assert record.shown[2]["best"] == max(record.shown[1]["val/acc"], record.shown[2]["val/acc"])


def test_compare_reads_tensorboard_when_there_is_no_csv(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    train(compose("train", [*QUIET, "trainer.max_epochs=2", "logger=tensorboard"], run))
    (run / ".hydra").mkdir()  # what Hydra writes in a run folder
    for name, node in (("config", {"model": {"watch": {"metric": "val/acc", "mode": "max"}}}),
                       ("overrides", ["logger=tensorboard"])):
        (run / ".hydra" / f"{name}.yaml").write_text(json.dumps(node))
    curves = read_run(run).curves.dropna(subset=["val/acc"])
    assert len(curves) == 2 and curves["val/acc"].between(0, 1).all()


@pytest.mark.parametrize(("make", "message"), [(lambda p: p / "nowhere", "does not exist"),
                                               (lambda p: p, "no runs under")])
def test_compare_without_runs_is_one_line(make, message: str, tmp_path: Path) -> None:
    proc = run_cli(["compare.py", str(make(tmp_path))])
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_summary_loads_best_epoch_from_the_tested_checkpoint(cfg_train, tmp_path: Path) -> None:
    train(cfg_train("trainer.max_epochs=2"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    best = torch.load(next((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt")), weights_only=True)
    assert (summary["best/epoch"], summary["best/step"]) == (best["epoch"], best["global_step"])

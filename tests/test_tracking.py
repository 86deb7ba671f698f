"""Comparing runs: names and groups from what varies, one W&B run per resumed run, summary.json,
compare.py's table and curves, W&B checkpoint artifacts, and the progress bar."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict

from src.utils.results import compare, find_runs, read_run
from src.utils.run_names import (
    is_bookkeeping,
    output_subdir_resolver,
    run_dir_resolver,
    run_names,
)
from src.utils.tracking import continue_run
from tests.conftest import QUIET, compose, offline_runs, run_cli, run_dirs, wandb_env
from train import train


def artifact_aliases(records: bytes) -> dict[str, set[str]]:
    """The aliases of each checkpoint logged as a W&B artifact version, read from the offline
    records (protobuf: the version's metadata JSON, then its aliases as field 11 strings)."""
    found = {}
    for match in re.finditer(rb'"original_filename":"([^"]+)"\}', records):
        i, aliases = match.end(), set()
        while records[i:i + 1] == b"Z":
            n = records[i + 1]
            aliases.add(records[i + 2:i + 2 + n].decode())
            i += 2 + n
        found[match.group(1).decode()] = aliases
    return found


def test_names_come_from_choices_and_overrides(tmp_path: Path) -> None:
    compose("train", ["model=dense", "model.optimizer.lr=0.1", "trainer.max_epochs=2", "seed=7", "logger=many",
                      f"paths.log_dir={tmp_path}", "extras.print_config=false", "+callbacks.x=null"], tmp_path)
    names = run_names({"seed": 7})
    assert names.name == "dense-digits-lr=0.1-max_epochs=2-s7"
    assert names.variant == names.group == "dense-digits-lr=0.1-max_epochs=2"
    compose("train", ["experiment=mnist_cnn", "model=dense", "seed=1"], tmp_path)
    assert run_names({"seed": 1}).name == "mnist_cnn-model=dense-s1"
    compose("train", ["init=checkpoint", "init.path=/runs/2026-11-30_09-18-10/checkpoints/epoch_003.ckpt", "seed=1"], tmp_path)
    assert run_names({"seed": 1}).name == "cnn-digits-init=checkpoint-path=epoch_003.ckpt-s1"
    assert all(map(is_bookkeeping, ["paths.log_dir", "logger", "+callbacks.x", "ckpt_path", "hydra.run.dir"]))
    assert not any(map(is_bookkeeping, ["trainer.max_epochs", "model.net.dropout", "debug"]))


@pytest.mark.slow  # a 2x2 sweep of W&B offline runs, then compare.py
def test_sweep_is_named_grouped_and_compared(tmp_path: Path) -> None:
    """The issue's 2 x 2 sweep on the default data, with every logger (W&B offline, without an API
    key) and checkpoints as W&B artifacts: four W&B runs named from what varies, in one group, with
    their media, summaries and artifacts; compare.py gives mean ± std per model and a curves plot."""
    env = wandb_env(tmp_path)
    # lr=1e-3 is the same in every job (Hydra passes it on as 0.001): not part of the names
    proc = run_cli(["train.py", "-m", "model=cnn,dense", "seed=1,2", "model.optimizer.lr=1e-3", "logger=many",
                    "trainer.max_epochs=2", "callbacks=[default,wandb_checkpoints]", f"paths.log_dir={tmp_path}",
                    *QUIET], env=env)
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
        # best and last checkpoints: two versions of one model artifact, with their aliases
        aliases = artifact_aliases(records)
        assert set(aliases) == {f"epoch_{summary['best/epoch']:03d}.ckpt", "last.ckpt"}
        assert "best" in aliases[f"epoch_{summary['best/epoch']:03d}.ckpt"] and "last" in aliases["last.ckpt"]
        assert records.count(f"model-{run_id}".encode()) >= 2
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

    # eval.py's W&B run takes the name and group of the training run it evaluates (job_type eval)
    ckpt = next((jobs[2] / "checkpoints").glob("epoch_*.ckpt"))
    proc = run_cli(["eval.py", f"ckpt_path={ckpt}", "logger=wandb", f"paths.log_dir={tmp_path / 'eval'}",
                    "extras.print_config=false"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((_, records),) = offline_runs(run_dirs(tmp_path / "eval")[0])
    assert b"dense-digits-s1" in records and f"sweep-{sweep.name}".encode() in records and b"cnn-digits" not in records


@pytest.mark.slow  # a run killed mid-epoch, then resumed, both under W&B
def test_killed_and_resumed_run_is_one_run(tmp_path: Path) -> None:
    """A run stopped after epoch 1 and resumed from its last.ckpt continues in its own folder:
    its .hydra/ kept (the resume's config beside it), the same W&B run id, one TensorBoard
    version, and CSV parts that compare.py joins into one curve; the summary's training time
    includes the first part. compare.py reads a run that has no summary (killed) from its curves."""
    env = wandb_env(tmp_path)
    common = ["logger=many", "trainer.max_epochs=3", f"paths.log_dir={tmp_path / 'logs'}", *QUIET]
    stop = "+callbacks.stop={_target_: tests.conftest.StopAfterEpochs, epochs: 1}"
    assert run_cli(["train.py", *common, stop], env=env).returncode == 0
    (run,) = run_dirs(tmp_path / "logs")
    first = json.loads((run / "summary.json").read_text())
    killed = shutil.copytree(run, tmp_path / "killed", ignore=shutil.ignore_patterns("summary.json"))
    (row,) = compare([read_run(killed)])[0].to_dict("records")
    assert row["status"] == "unfinished" and row["best val/acc"] == pytest.approx(first["best/val/acc"])

    proc = run_cli(["train.py", *common, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert run_dirs(tmp_path / "logs") == [run]
    assert stop in (run / ".hydra" / "overrides.yaml").read_text()  # the first session's
    (resume,) = (run / ".hydra").glob("resume_*/overrides.yaml")
    assert "ckpt_path=" in resume.read_text()
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


def test_progress_bar_shows_loss_watched_metric_and_best(tmp_path: Path) -> None:
    """The loss (the classifier logs it per epoch), the watched metric and its best once
    validated, and nothing else."""
    cfg = compose("train", ["trainer.max_epochs=3", "extras.print_config=false", "callbacks.model_summary=null"], tmp_path)
    assert cfg.callbacks.rich_progress_bar.metric == cfg.task.watch.metric == "val/acc"
    with open_dict(cfg):
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
    for name, node in (("config", {"task": {"watch": {"metric": "val/acc", "mode": "max"}}}),
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


@pytest.mark.parametrize("in_place", [True, False])
def test_continue_run_takes_names_and_logger_ids_from_the_checkpoint(in_place: bool, tmp_path: Path) -> None:
    """Only a run resumed in its own folder continues: names (unless set on the command line),
    W&B id and TensorBoard version come from the checkpoint; elsewhere a new run starts."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    ckpt_path = str(run / "checkpoints" / "last.ckpt")
    cfg = compose("train", ["logger=many", "run.group=mine", "train=true"], run if in_place else tmp_path / "other")
    ckpt = {"archlab": {"config": {"run": {"name": "x-s1", "variant": "x", "group": "sweep-1"}},
                        "loggers": {"WandbLogger": "abc123", "TensorBoardLogger": 0, "CSVLogger": 0}}}
    (run / "summary.json").write_text("{}")
    continue_run(cfg, ckpt, ckpt_path)
    continued = (cfg.run.name, cfg.logger.wandb.id, cfg.logger.tensorboard.get("version"), (run / "summary.json").exists())
    assert continued == (("x-s1", "abc123", 0, False) if in_place else (run_names({"seed": 12345}).name, None, None, True))
    assert cfg.run.group == "mine"


def test_compare_lists_sweep_jobs_in_their_order(tmp_path: Path) -> None:
    for job in ("10", "2", "0", "notes"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "config.yaml").write_text("{}")
    assert [p.name for p in find_runs([tmp_path])] == ["notes", "0", "2", "10"]


def test_only_a_run_resumed_in_its_folder_keeps_its_hydra_record(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert run_dir_resolver(ckpt, True, "new") == str(run) and run_dir_resolver(ckpt, False, "new") == "new"
    assert output_subdir_resolver(ckpt, True, str(run), "resume_1") == ".hydra/resume_1"
    assert output_subdir_resolver(ckpt, True, str(tmp_path / "sweep" / "0"), "resume_1") == ".hydra"  # a sweep job
    assert run_dir_resolver(str(tmp_path / "elsewhere" / "last.ckpt"), True, "new") == "new"

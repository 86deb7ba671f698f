"""The entry points as users run them: errors, eval.py, DDP, sweeps, W&B offline."""

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import QUIET, metrics_csv, run_cli, run_dirs, run_ok


@pytest.mark.slow  # several commands in subprocesses; the message is checked in-process in test_configs
def test_model_data_mismatch_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli(["train.py", "model=cnn", "data=toy_text", "hydra.searchpath=[file://tests/configs]",
                    f"paths.log_dir={tmp_path}"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "model=cnn" in out and "data=toy_text" in out and "Data for model=cnn: cifar10, digits" in out
    assert "Traceback" not in out


@pytest.mark.slow  # keeps the default suite under 10 minutes
def test_unknown_option_is_reported_by_hydra(tmp_path: Path) -> None:
    proc = run_cli(["train.py", "model=nope", f"paths.log_dir={tmp_path}"])
    assert proc.returncode != 0 and "Could not find 'model/nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("logs")
    proc = run_cli(["train.py", "trainer.max_epochs=2", f"paths.log_dir={log_dir}", *QUIET])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(log_dir)
    return run


@pytest.mark.slow  # eval.py in a subprocess; test_eval checks it in-process
def test_eval_reproduces_test_metrics_and_writes_predictions(trained_run: Path, tmp_path: Path) -> None:
    best = next((trained_run / "checkpoints").glob("epoch_*.ckpt"))
    proc = run_cli(["eval.py", f"ckpt_path={best}", f"paths.log_dir={tmp_path}", "extras.print_config=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(tmp_path)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 360 and set(rows[0]) == {"target", "pred", "confidence"}  # digits test split
    acc = sum(r["pred"] == r["target"] for r in rows) / len(rows)
    assert acc == pytest.approx(float(metrics_csv(trained_run)["test/acc"]), abs=1e-6)


@pytest.mark.slow  # a command-line run on top of the trained run
def test_train_false_tests_the_given_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    """train=false ckpt_path=X tests X's weights (the training run's test metric, which it took on
    its best checkpoint), and a test-only run, which logs no val/* metric, ends cleanly."""
    best = next((trained_run / "checkpoints").glob("epoch_*.ckpt"))
    run = run_ok("train.py", ["train=false", f"ckpt_path={best}"], tmp_path)
    assert float(metrics_csv(run)["test/acc"]) == pytest.approx(float(metrics_csv(trained_run)["test/acc"]), abs=1e-6)


@pytest.mark.slow  # a command-line run on top of the trained run
def test_resuming_a_finished_run_tests_its_best_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    """The resume continues in the run's folder (a copy here): CSV version_1 holds its test metrics."""
    shutil.copytree(trained_run, tmp_path / "run")
    run = run_ok("train.py", ["trainer.max_epochs=2", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}"],
                 tmp_path)
    assert run == tmp_path / "run" and (run / "csv" / "version_1" / "metrics.csv").exists()
    assert float(metrics_csv(run)["test/acc"]) == pytest.approx(float(metrics_csv(trained_run)["test/acc"]), abs=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.ckpt", "does not exist"),
        (lambda p: (p / "bad.ckpt").write_bytes(b"not a checkpoint") and p / "bad.ckpt", "not a readable checkpoint"),
    ],
)
def test_bad_checkpoint_is_one_clear_line(make, message: str, tmp_path: Path) -> None:
    proc = run_cli(["eval.py", f"ckpt_path={make(tmp_path)}", f"paths.log_dir={tmp_path}"])
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_checkpoint_of_other_model_names_the_right_command(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    proc = run_cli(["eval.py", f"ckpt_path={ckpt}", "model=dense", f"paths.log_dir={tmp_path}"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "model=cnn data=digits" in out and "Traceback" not in out


@pytest.mark.slow  # two DDP processes
def test_ddp_cpu_single_run(tmp_path: Path) -> None:
    """Every rank composes the same config: the relaunched rank keeps the flags and Hydra overrides
    that choose it (a data config found only through hydra.searchpath: without them, rank 1 could
    not compose it). With the default callbacks, as a user runs it: rank 0's progress bar computes
    the epoch's metrics (collectives) in a hook where the other ranks do not."""
    proc = run_cli(["train.py", "--config-name=train", "hydra.searchpath=[file://tests/configs]", "data=digits_elsewhere",
                    "trainer=ddp_cpu", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}", "extras.print_config=false"],
                   timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    (run,) = run_dirs(tmp_path)
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert "[rank: 1]" not in out and "GLOBAL_RANK: 1" not in out


@pytest.mark.slow  # two DDP jobs of 2 processes each
def test_ddp_cpu_multirun_one_dir_per_job(tmp_path: Path) -> None:
    proc = run_cli(["train.py", "-m", "trainer=ddp_cpu", "trainer.max_epochs=1", "model.net.hidden=32,64",
                    f"paths.log_dir={tmp_path}", *QUIET])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert [p.relative_to(sweep).as_posix() for p in run_dirs(tmp_path)] == ["0", "1"]
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").exists()
    assert not (tmp_path / "train" / "runs").exists()
    assert "[rank: 1]" not in out


@pytest.mark.slow  # a 3-trial Optuna sweep as a user runs it
def test_optuna_sweeps_the_models_own_search_space(tmp_path: Path) -> None:
    """Any model can be swept: the search space comes from its config, the direction from its
    watched metric, and the value reported is the one checkpointing kept."""
    out, best = optuna_sweep(["hydra.sweeper.n_trials=2", "model=dense", "data.batch_size=64", "trainer.max_epochs=2"],
                             tmp_path)
    assert "Directions: ['maximize']" in out
    # configs/model/dense.yaml searches lr and batch size; the command line fixed the batch size
    assert set(best["best_params"]) == {"model.optimizer.lr"} and "data.batch_size=64" in out
    assert best["best_value"] == pytest.approx(max(map(best_val_acc, tmp_path.rglob("last.ckpt"))))


def optuna_sweep(overrides: list[str], log_dir: Path) -> tuple[str, dict]:
    """Run ``train.py -m hparams_search=optuna``; its output and optimization_results.yaml."""
    proc = run_cli(["train.py", "-m", "hparams_search=optuna", *overrides, f"paths.log_dir={log_dir}", *QUIET])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    (results,) = log_dir.rglob("optimization_results.yaml")
    return out, yaml.safe_load(results.read_text())


def best_val_acc(ckpt: Path) -> float:
    """The best val/acc that the run's checkpointing kept, read from its last.ckpt."""
    states = torch.load(ckpt, weights_only=True)["callbacks"]
    (state,) = [v for k, v in states.items() if k.startswith("ModelCheckpoint{'monitor': 'val/acc'")]
    return float(state["best_model_score"])


@pytest.mark.slow  # an Optuna sweep of three trials
def test_optuna_sweep_survives_a_failing_trial(tmp_path: Path) -> None:
    """dropout=5.0 makes nn.Dropout raise: those trials fail, the sweep finishes on the others.
    The seeded TPE start-up draws 5.0, 5.0, 0.1 (deterministic for the pinned optuna)."""
    out, best = optuna_sweep(["hydra.sweeper.n_trials=3", "hydra.sweeper.custom_search_space=null",
                              "model.net.dropout=choice(0.1,5.0)", "trainer.max_epochs=1"], tmp_path)
    assert "dropout probability has to be between 0 and 1" in out
    assert best["best_params"]["model.net.dropout"] == 0.1 and 0 < best["best_value"] <= 1
    # compare.py on the sweep: the trials that failed are rows too
    (sweep,) = {run.parent for run in run_dirs(tmp_path)}
    proc = run_cli(["compare.py", str(sweep)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model.net.dropout"], r["status"]) for r in rows] == [("5.0", "unfinished"), ("5.0", "unfinished"),
                                                                     ("0.1", "finished")]
    assert float(rows[2]["best val/acc"]) == pytest.approx(best["best_value"])
    assert rows[2]["run"] == "cnn-digits-dropout=0.1-s12345"  # named by what the sweep varies

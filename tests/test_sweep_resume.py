"""Sweeps that survive (src/utils/sweep_resume.py): a killed sweep re-run by its own command runs
only its unfinished work, a killed job resumes from its last.ckpt, a SIGTERM'd run saves one."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, LightningModule, Trainer
from omegaconf import OmegaConf, open_dict

from src.utils.config import compose
from tests.conftest import FAST, QUIET, final_weights, run_cli
from train import train

# 2 epochs of 5 steps; deterministic, so a resumed job equals an uninterrupted one
TINY = ["model=dense", "data.batch_size=32", "trainer.max_epochs=2", "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.deterministic=true"]
KILL = ["hydra.searchpath=[file://tests/configs]", "+kill=at_step"]


class KillAtStep(Callback):
    """``ARCHLAB_TEST_KILL=<job num>:<step>:<signal>``: that sweep job sends itself the signal after
    that training step (SIGKILL: as the OOM killer or a lost node; nothing is saved)."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        job, step, sig = os.environ.get("ARCHLAB_TEST_KILL", "::").split(":")
        num = OmegaConf.select(HydraConfig.get(), "job.num", default=None) if HydraConfig.initialized() else None
        if str(num) == job and trainer.global_step == int(step):
            os.kill(os.getpid(), getattr(signal, sig))


def sweep(args: list[str], log_dir: Path, kill: str = "", sweep_dir: Path | None = None):
    env = {"ARCHLAB_TEST_KILL": kill} if kill else {}
    where = [f"hydra.sweep.dir={sweep_dir}"] if sweep_dir else []
    return run_cli(["train.py", "-m", *args, *TINY, *KILL, *QUIET, f"paths.log_dir={log_dir}", *where], env=env, timeout=300)


def fingerprint(folder: Path) -> dict[str, tuple[float, str]]:
    """Every file under ``folder``: its modification time and content hash."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def table(sweep_dir: Path) -> list[dict[str, str]]:
    proc = run_cli(["compare.py", str(sweep_dir)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep_dir / "comparison.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # three 4-job sweeps as a user runs them
def test_a_killed_sweep_rerun_trains_only_its_unfinished_jobs(tmp_path: Path) -> None:
    grid = ["model.optimizer.lr=0.001,0.003", "seed=1,2"]
    full = sweep(grid, tmp_path / "full", sweep_dir=tmp_path / "full_sweep")
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]

    killed_dir = tmp_path / "killed_sweep"
    killed = sweep(grid, tmp_path / "killed", kill="1:7:SIGKILL", sweep_dir=killed_dir)  # job 1, mid epoch 2
    assert killed.returncode == -signal.SIGKILL
    assert (killed_dir / "0" / "summary.json").exists() and not (killed_dir / "1" / "summary.json").exists()
    assert torch.load(killed_dir / "1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    assert not (killed_dir / "2").exists()
    job0 = fingerprint(killed_dir / "0")

    resumed = sweep(grid, tmp_path / "killed", sweep_dir=killed_dir)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert fingerprint(killed_dir / "0") == job0  # the finished job is not touched
    assert "#0 finished before; kept as it is" in out
    assert f"Resuming this sweep job from {killed_dir / '1' / 'checkpoints' / 'last.ckpt'}" in out
    assert out.count("Resuming this sweep job from") == 1  # the never-started jobs start fresh

    rows, reference = table(killed_dir), table(tmp_path / "full_sweep")
    assert [r["run"] for r in rows] == [r["run"] for r in reference] and len(rows) == 4  # every job once
    tests = [k for k in reference[0] if k.startswith("test/")]
    assert tests and [[r[k] for k in tests] for r in rows] == [[r[k] for k in tests] for r in reference]
    assert all(r["status"] == "finished" and float(r["train s"]) > 0 for r in rows)
    # the resumed job's training time is its total: both sessions' (the Timer travels in last.ckpt)
    resumed_ckpt = torch.load(killed_dir / "1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed_ckpt["global_step"] == 10
    for job in range(4):  # bit-exact: the resumed job's weights are the uninterrupted one's
        a, b = (final_weights(d / str(job) / "checkpoints" / "last.ckpt") for d in (killed_dir, tmp_path / "full_sweep"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # a sweep in a subprocess, then its re-run
def test_a_sweep_folder_resumed_with_other_overrides_is_one_line(tmp_path: Path) -> None:
    common = ["trainer.max_epochs=1", f"paths.log_dir={tmp_path}", *QUIET]
    (tmp_path / "sweep").mkdir()  # as a sweep of seed=1,2 left it
    OmegaConf.save(OmegaConf.create(["seed=1,2", *common]), tmp_path / "sweep" / "sweep_overrides.yaml")
    proc = run_cli(["train.py", "-m", "seed=1,2,3", *common, f"hydra.sweep.dir={tmp_path / 'sweep'}"], timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out
    (line,) = [line for line in out.splitlines() if "Error" in line]
    assert (f"ConfigError: {tmp_path / 'sweep'} is a sweep of seed=1,2, not seed=1,2,3; resume it with its own "
            "overrides (its sweep_overrides.yaml), or start a new sweep without hydra.sweep.dir") in line, line
    assert not list((tmp_path / "sweep").glob("*/.hydra"))  # no job ran


@pytest.mark.slow  # two Optuna sweeps as a user runs them
def test_a_killed_optuna_sweep_finishes_its_study(tmp_path: Path) -> None:
    args = ["hparams_search=optuna", "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.n_startup_trials=2"]
    sweep_dir = tmp_path / "sweep"
    killed = sweep(args, tmp_path, kill="3:7:SIGKILL", sweep_dir=sweep_dir)  # the 4th trial, mid epoch 2
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    first = {job: fingerprint(sweep_dir / str(job)) for job in range(3)}

    resumed = sweep(args, tmp_path, sweep_dir=sweep_dir)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert out.count("finished before; kept as it is") == 3
    assert f"Resuming this sweep job from {sweep_dir / '3' / 'checkpoints' / 'last.ckpt'}" in out
    assert {job: fingerprint(sweep_dir / str(job)) for job in range(3)} == first
    assert sorted(p.name for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()) == list("012345")
    # one study of 6 trials: the best of every job's value
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    values = [json.loads((sweep_dir / str(job) / "summary.json").read_text())["best/val/acc"] for job in range(6)]
    assert best["best_value"] == pytest.approx(max(values))
    assert "Best value:" in out and out.count("Launching 1 jobs locally") == 3  # trials 3, 4, 5


@pytest.mark.parametrize("step", [7, pytest.param(5, marks=pytest.mark.slow)], ids=["mid epoch", "an epoch's last step"])
def test_a_run_stopped_by_sigterm_resumes_as_if_never_stopped(step: int, tmp_path: Path) -> None:
    """SIGTERM after ``step`` (5 steps an epoch): Lightning finishes the step, SaveOnPreemption
    writes last.ckpt there, the run exits 143 (128 + SIGTERM) so no scheduler takes it for done;
    resumed from it, the run ends with an uninterrupted one's weights and test metrics: the train
    loader goes on with that epoch's order and augmentation, and an epoch stopped on its last step
    is validated (early stopping and the best checkpoint need its val/acc)."""
    assert_sigterm_resume_is_exact([*FAST, *TINY, "data.augment=crop"], step, tmp_path)


def assert_sigterm_resume_is_exact(common: list[str], step: int, tmp_path: Path) -> None:
    """``common`` run uninterrupted; again stopped by SIGTERM after ``step``, which must exit 143
    with that step in last.ckpt; then resumed from it: the same final weights and test metrics."""
    full, _ = train(compose("train", common, tmp_path / "full"))
    stopped = compose("train", common, tmp_path / "stopped")
    with open_dict(stopped):
        stopped.callbacks.kill = {"_target_": "tests.test_sweep_resume.KillAtStep"}
    os.environ["ARCHLAB_TEST_KILL"] = f"None:{step}:SIGTERM"
    try:
        with pytest.raises(SystemExit) as e:
            train(stopped)
    finally:
        del os.environ["ARCHLAB_TEST_KILL"]
    assert e.value.code == 128 + signal.SIGTERM
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == step  # no step lost
    resumed, _ = train(compose("train", [*common, f"ckpt_path={last}"], tmp_path / "stopped"))
    a, b = final_weights(last), final_weights(tmp_path / "full" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tests = {k: float(v) for k, v in full.items() if k.startswith("test/")}
    assert tests and {k: float(resumed[k]) for k in tests} == tests


def test_the_slurm_launcher_requeues_before_the_time_limit() -> None:
    """Config level (no SLURM here): the signal comes before the limit, and timeouts requeue."""
    compose("train", ["hydra/launcher=slurm"])
    launcher = HydraConfig.get().launcher
    assert launcher.signal_delay_s == 120 and launcher.max_num_timeout == 3 and launcher.additional_parameters.requeue

"""Long tests, run by `make test-slow` (and CI)."""

import json
from pathlib import Path

import pytest
import torch

from src.models.classification import ClassificationModule
from src.models.nets.cnn import SimpleCNN
from src.utils.config import compose
from tests.conftest import QUIET, offline_runs, run_cli, run_dirs, wandb_env
from train import train

pytestmark = pytest.mark.slow


def test_compiled_run_checkpoint_loads_uncompiled(tmp_path: Path) -> None:
    cfg = compose("train", [*QUIET, "model.compile=true", "trainer.max_epochs=1", "trainer.limit_train_batches=10",
                                "trainer.limit_val_batches=2", "test=false"], tmp_path)
    _, objects = train(cfg)
    assert hasattr(objects["model"].net, "_compiled_call_impl") and objects["model"].net._compiled_call_impl
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    module = ClassificationModule.load_from_checkpoint(ckpt, net=SimpleCNN(1, 10, image_size=8), weights_only=True)
    compiled = objects["model"].net.state_dict()
    assert all(torch.equal(v, compiled[k]) for k, v in module.net.state_dict().items())


def test_submitit_local_launcher_runs_a_sweep(tmp_path: Path) -> None:
    """hydra/launcher=local goes through submitit, the same code path as hydra/launcher=slurm: jobs
    run in fresh processes, which resolve archlab's own interpolations (the W&B run names)."""
    proc = run_cli(["train.py", "-m", "hydra/launcher=local", "trainer.max_epochs=1", "seed=1,2", "logger=[csv,wandb]",
                    f"paths.log_dir={tmp_path}", *QUIET], env=wandb_env(tmp_path))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = run_dirs(tmp_path)
    assert [p.name for p in jobs] == ["0", "1"]
    for job, name in zip(jobs, ["cnn-digits-s1", "cnn-digits-s2"]):
        assert (job / "checkpoints" / "last.ckpt").exists()
        assert json.loads((job / "summary.json").read_text())["run/name"] == name
        ((_, records),) = offline_runs(job)
        assert name.encode() in records

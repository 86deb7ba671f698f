"""Shared fixtures: configs composed with Hydra's compose API and tiny, fast overrides."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

from src.utils.config import register_resolvers  # noqa: E402

register_resolvers()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))  # the 2 cores CI has, unless told

# Fast settings used by most tests: digits, tiny nets, no progress bar.
FAST = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as ``python <entry>.py <overrides>`` would, with its run dir set to
    ``output_dir`` (the compose API has no Hydra run dir)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
        cfg.paths.work_dir = str(ROOT)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def cfg_train(tmp_path: Path):
    return lambda *overrides: compose_cfg("train", [*FAST, *overrides], tmp_path)


@pytest.fixture
def data_dir() -> Path:
    """A writable copy of ../shared/data (torchvision extracts next to the archives), or the
    folder named by DATA_DIR."""
    if os.environ.get("DATA_DIR"):
        return Path(os.environ["DATA_DIR"])
    if not SHARED_DATA.exists():
        pytest.skip("no DATA_DIR and no ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture
def mnist_dir(data_dir: Path, tmp_path_factory) -> Path:
    if not (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST archives not found in {data_dir}/MNIST/raw (set DATA_DIR to a copy of ../shared/data)")
    if os.access(data_dir / "MNIST" / "raw", os.W_OK):
        return data_dir
    copy = tmp_path_factory.mktemp("data")
    shutil.copytree(data_dir / "MNIST", copy / "MNIST")
    return copy


def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an entry point as a user would; returns the finished process (stdout+stderr merged)."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update(env or {})
    full_env["PROJECT_ROOT"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
